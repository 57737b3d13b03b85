"""The handler adapter: a ``BaseHTTPRequestHandler`` subclass served as one ASGI 3 application
(SPEC §3.5, §4; werkzeug's ``WSGIRequestHandler`` is the model, inverted).

Per request, in a pool thread: the class is instantiated WITHOUT its socket-bound ``__init__``;
``rfile`` (a streaming ``BodyReader``), ``wfile`` (``ResponseWriter``), ``headers``
(``http.client.HTTPMessage``), ``command``, ``path`` (raw path + "?" + query, byte-exact, latin-1),
``request_version``, ``requestline``, ``client_address``, ``server`` are set, then ``do_<METHOD>``
is called. What the handler writes is raw HTTP: ``ResponseWriter`` parses the head (status line,
headers; 1xx heads skipped) and streams the rest as the body on every write. ``Content-Length`` is
honoured (the response ends when it is reached); without it the ASGI server streams chunked; a
handler's own ``Transfer-Encoding: chunked`` framing is decoded. No header is ever added, and
the ``Server`` / ``Date`` pair that ``BaseHTTPRequestHandler.send_response`` adds by itself is left
out (the front server sends its own ``date``; two would be a duplicate): a class that does not
override ``send_response`` gets ``log_request`` + ``send_response_only``. Headers the handler
sends explicitly always pass.
Methods: HEAD falls back to ``do_GET`` minus the body; OPTIONS without ``do_OPTIONS`` → 204 +
``Allow``; another missing method → 405 + ``Allow`` (JSON error body).

The per-request line ``BaseHTTPRequestHandler.log_request`` writes to stderr (``127.0.0.1 - -
[date] "GET / HTTP/1.1" 200 -``) duplicates the front server's access line: with
``log_requests=False`` (spec ``"handler_log": "hide"``, the ``handler_log`` setting; dev's
default) it is not written, at the source, so it costs neither the write nor the supervisor's
output pump. Only a class that keeps the stdlib ``log_request`` and ``log_message`` is silenced
(one that overrides either chose its own logging); ``log_error`` lines (``send_error``'s
``code 404, message ...``, the handler's own calls) are always written.
"""

import functools
import http.client
import os
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler
from typing import Any, Dict, List, Optional, Tuple, Type
from urllib.parse import quote

from .asgitypes import Receive, Scope, Send
from .bridge import BodyReader, Outbox, refuse_declared_oversize, refuse_non_http, run_threaded, send_error
from .pool import InFlight

HOP_BY_HOP = {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}


def _no_log_request(code: Any = "-", size: Any = "-") -> None:
    """``log_request`` of a handler whose per-request line is hidden (an instance attribute)."""
    return None


def _send_response_without_server_date(self: BaseHTTPRequestHandler, code: int, message: Optional[str] = None) -> None:
    """``BaseHTTPRequestHandler.send_response`` minus its automatic ``Server`` and ``Date``."""
    self.log_request(code)
    self.send_response_only(code, message)


class _Server:
    """What ``self.server`` offers a handler: ``server_address``, ``server_name``, ``server_port``."""

    def __init__(self, server: Optional[Tuple[str, Optional[int]]]) -> None:
        host, port = (server or ("127.0.0.1", 80))[:2]
        self.server_address = (host, port or 0)
        self.server_name = host
        self.server_port = port or 0


class _Unchunker:
    """Incremental decoder for a handler that writes ``Transfer-Encoding: chunked`` itself."""

    def __init__(self) -> None:
        self.buf = b""
        self.state = "size"  # "size" line, chunk "data", its trailing "crlf"
        self.left = 0
        self.finished = False

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = []
        while not self.finished:
            if self.state == "size":
                end = self.buf.find(b"\r\n")
                if end < 0:
                    break
                size = int(self.buf[:end].split(b";")[0].strip() or b"0", 16)
                self.buf = self.buf[end + 2:]
                if size == 0:
                    self.finished = True
                    break
                self.left, self.state = size, "data"
            elif self.state == "data":
                if not self.buf:
                    break
                take = self.buf[: self.left]
                self.buf = self.buf[len(take):]
                self.left -= len(take)
                out.append(take)
                if self.left == 0:
                    self.state = "crlf"
            else:
                if len(self.buf) < 2:
                    break
                self.buf, self.state = self.buf[2:], "size"
        return b"".join(out)


class ResponseWriter:
    """The handler's ``wfile``: parses the raw HTTP head it writes, then streams the body.

    ``write(b)`` returns ``len(b)``; every write after the head is sent at once (as on a socket);
    ``flush()`` sends a head that was written but not yet sent. ``head``: drop the body (HEAD).
    """

    def __init__(self, outbox: Outbox, head: bool) -> None:
        self.outbox = outbox
        self.drop_body = head
        self.buffer = b""
        self.start: Optional[Dict[str, Any]] = None
        self.sent = False
        self.finished = False
        self.remaining: Optional[int] = None
        self.unchunker: Optional[_Unchunker] = None
        self.closed = False

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        data = bytes(data)
        if self.finished or not data:
            return len(data)
        if self.start is None:
            self.buffer += data
            body = self._parse_head()
            if self.start is None:
                return len(data)
        else:
            body = data
        self._send_body(body)
        return len(data)

    def _parse_head(self) -> bytes:
        while self.start is None:
            end = self.buffer.find(b"\r\n\r\n")
            sep = 4
            if end < 0:
                end, sep = self.buffer.find(b"\n\n"), 2
                if end < 0:
                    if len(self.buffer) >= 5 and not self.buffer.startswith(b"HTTP/"):
                        raise ValueError("the handler wrote a response that does not start with an HTTP status line")
                    return b""
            head, self.buffer = self.buffer[:end], self.buffer[end + sep:]
            lines = head.replace(b"\r\n", b"\n").split(b"\n")
            status_line = lines[0].split(None, 2)
            if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
                raise ValueError("the handler wrote %r, not an HTTP status line" % lines[0][:80])
            status = int(status_line[1])
            if 100 <= status < 200:
                continue  # an interim response (100 Continue): the ASGI server handles those
            headers = []
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name, value = name.strip().lower(), value.strip()
                if name == b"content-length":
                    self.remaining = int(value)
                elif name == b"transfer-encoding" and b"chunked" in value.lower():
                    self.unchunker = _Unchunker()
                if name in HOP_BY_HOP:
                    continue
                headers.append((name, value))
            if self.unchunker is not None:
                self.remaining = None
            self.start = {"type": "http.response.start", "status": status, "headers": headers}
        body, self.buffer = self.buffer, b""
        return body

    def _send_body(self, body: bytes, last: bool = False) -> None:
        if self.unchunker is not None:
            body = self.unchunker.feed(body)
            last = last or self.unchunker.finished
        if self.remaining is not None:
            body = body[: self.remaining]
            self.remaining -= len(body)
            last = last or self.remaining == 0
        if self.drop_body:
            body = b""
        if not body and not last and self.sent:
            return
        messages: List[Dict[str, Any]] = []
        if not self.sent:
            messages.append(self.start)  # type: ignore[arg-type]
            self.sent = True
        if body or last:
            messages.append({"type": "http.response.body", "body": body, "more_body": not last})
        self.finished = last
        self.outbox.put(messages)

    def flush(self) -> None:
        if self.start is not None and not self.sent:
            self._send_body(b"")

    def finish(self) -> None:
        """End the response (the handler returned). Raises ValueError if it wrote no head."""
        if self.start is None:
            raise ValueError("the handler returned without writing a response (call send_response)")
        if not self.finished:
            self._send_body(b"", last=True)

    def close(self) -> None:
        self.closed = True


def allowed_methods(handler_class: Type[BaseHTTPRequestHandler]) -> List[str]:
    """The methods a handler class serves (SPEC §3.5): its ``do_X``, plus HEAD with GET, OPTIONS."""
    methods = sorted({name[3:] for name in dir(handler_class) if name.startswith("do_") and name[3:].isupper()})
    if "GET" in methods and "HEAD" not in methods:
        methods.append("HEAD")
    if "OPTIONS" not in methods:
        methods.append("OPTIONS")
    return methods


class HandlerAdapter:
    """ASGI 3 app driving ``handler_class`` per request in ``executor`` threads.
    ``body_limit``: bytes (0 = none); ``label``: function id for fnserve's own error lines;
    ``log_requests``: False hides the stdlib per-request ``log_request`` line (module docstring).
    Whatever else the class logs goes to stderr, which is the function's log (the supervisor reads
    it and prefixes each line with the function)."""

    def __init__(self, handler_class: Type[BaseHTTPRequestHandler], *, executor: Any, body_limit: int = 0, label: str = "?",
                 log_requests: bool = True) -> None:
        self.handler_class = handler_class
        self.hide_request_line = not log_requests and handler_class.log_request is BaseHTTPRequestHandler.log_request \
            and handler_class.log_message is BaseHTTPRequestHandler.log_message
        self.executor = executor
        self.body_limit = body_limit
        self.label = label
        self.inflight = InFlight()
        self.allow = ", ".join(allowed_methods(handler_class)).encode("latin-1")

    async def shutdown(self, timeout: float = 30.0) -> None:
        await self.inflight.wait(timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" and await refuse_non_http(scope, receive, send):
            return
        method = scope["method"]
        do = "do_" + method
        if not hasattr(self.handler_class, do):
            if method == "HEAD" and hasattr(self.handler_class, "do_GET"):
                do = "do_GET"
            elif method == "OPTIONS":
                await send({"type": "http.response.start", "status": 204, "headers": [(b"allow", self.allow)]})
                await send({"type": "http.response.body", "body": b""})
                return
            else:
                await send_error(send, 405, "method_not_allowed", "%s is not allowed here; allowed: %s" % (method, self.allow.decode()), ((b"allow", self.allow),))
                return
        if self.body_limit and await refuse_declared_oversize(scope, send, self.body_limit):
            return
        await run_threaded(self.executor, self.inflight, self.body_limit, receive, send,
                           functools.partial(self._run, scope, do), head=method == "HEAD")

    def _make(self, scope: Scope, reader: BodyReader, wfile: ResponseWriter) -> BaseHTTPRequestHandler:
        cls = self.handler_class
        h = cls.__new__(cls)
        raw_path = scope.get("raw_path") or quote(scope.get("path") or "/").encode("ascii")
        query = scope.get("query_string") or b""
        path = (raw_path + b"?" + query if query else raw_path).decode("latin-1")
        version = "HTTP/" + scope.get("http_version", "1.1")
        headers = http.client.HTTPMessage()
        for name, value in scope.get("headers", ()):
            headers[name.decode("latin-1")] = value.decode("latin-1")
        client = scope.get("client") or ("", 0)
        h.request = h.connection = None
        h.client_address = (client[0], client[1])
        # duck-typed stand-ins for the socket server and the connection's buffered files: the
        # handler API uses only what they provide (server_name/port; read/readline, write/flush)
        h.server = _Server(scope.get("server"))  # type: ignore[assignment]
        h.rfile = reader  # type: ignore[assignment]
        h.wfile = wfile  # type: ignore[assignment]
        h.command, h.path, h.request_version = scope["method"], path, version
        h.requestline = "%s %s %s" % (scope["method"], path, version)
        h.raw_requestline = h.requestline.encode("latin-1") + b"\r\n"  # type: ignore[attr-defined]  # set by handle_one_request, undeclared in typeshed
        h.headers = headers
        h.close_connection = True
        if self.hide_request_line:
            h.log_request = _no_log_request  # type: ignore[method-assign]  # per instance: the class stays as written
        if cls.send_response is BaseHTTPRequestHandler.send_response:
            # per instance, so a subclass that overrides send_response keeps its own
            h.send_response = _send_response_without_server_date.__get__(h)  # type: ignore[method-assign]
        if isinstance(h, SimpleHTTPRequestHandler) and "directory" not in vars(cls):
            h.directory = os.getcwd()
        return h

    def _run(self, scope: Scope, do: str, reader: BodyReader, outbox: Outbox) -> None:
        wfile = ResponseWriter(outbox, head=scope["method"] == "HEAD")
        error: Optional[BaseException] = None
        try:
            h = self._make(scope, reader, wfile)
            getattr(h, do)()
            wfile.finish()
        except BaseException as exc:
            error = outbox.settle(exc, wfile.sent, wfile.finished, self.label, "the handler")
        finally:
            outbox.done(error)
            self.inflight.exit()

