"""The WSGI adapter: a PEP 3333 application served as one ASGI 3 application (SPEC §4).

Each request runs in the function's thread pool (``wsgi.multithread`` is True). The environ
follows PEP 3333 §environ: ``SCRIPT_NAME`` = ``scope["root_path"]`` (the EdgeOne mount prefix,
SPEC §3.4) and ``PATH_INFO`` = the rest of the path ("/" when empty), both the URL-decoded path
BYTES as latin-1 strings ("native strings"); ``QUERY_STRING`` byte-exact; ``wsgi.input`` streams
the body (``BodyReader``, over ``body_limit`` → 413); ``wsgi.errors`` is the function's stderr;
``fnserve.route_params`` the route parameters. Response bodies stream chunk by chunk: headers go
out with the first non-empty chunk (PEP 3333 §buffering), each chunk is sent as it is produced,
``close()`` is always called, ``start_response(..., exc_info)`` re-raises once headers are sent.
"""

import functools
import sys
from typing import Any, Dict, Iterable, List, Optional, Tuple
from urllib.parse import unquote, unquote_to_bytes

from .asgitypes import Receive, Scope, Send
from .bridge import BodyReader, Outbox, refuse_declared_oversize, refuse_non_http, run_threaded
from .pool import InFlight

FILE_BLOCK = 1 << 16  # bytes read per block from a wsgi.file_wrapper file


class FileWrapper:
    """``wsgi.file_wrapper`` (PEP 3333 §optional-platform-specific-file-handling): iterates
    ``filelike`` in ``blksize`` blocks; the adapter recognises it and reads 64 KiB blocks."""

    def __init__(self, filelike: Any, blksize: int = 8192) -> None:
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self) -> Iterable[bytes]:
        read = self.filelike.read
        while True:
            block = read(self.blksize)
            if not block:
                return
            yield block


def wsgi_path(scope: Scope) -> Tuple[str, str]:
    """``(SCRIPT_NAME, PATH_INFO)`` per PEP 3333 and SPEC §3.4, from ``raw_path`` when it agrees
    with ``path`` (so percent-encoded non-UTF-8 bytes survive), else from ``path``."""
    path = scope.get("path") or "/"
    raw = scope.get("raw_path")
    full: Optional[bytes] = None
    if raw:
        decoded = unquote_to_bytes(raw) if b"%" in raw else raw
        if decoded.decode("utf-8", "replace") == path or unquote(raw.decode("latin-1")) == path:
            full = decoded
    if full is None:
        full = path.encode("utf-8", "surrogateescape")
    root = (scope.get("root_path") or "").encode("utf-8", "surrogateescape")
    if root and full.startswith(root) and full[len(root):len(root) + 1] in (b"", b"/"):
        rest = full[len(root):]  # only at a segment boundary: /apihealth is not under /api
    else:
        rest, root = full, b""
    return root.decode("latin-1"), (rest or b"/").decode("latin-1")


_KEYS: Dict[bytes, str] = {}  # header name → its environ key ("HTTP_USER_AGENT"), for the last names seen
_KEYS_MAX = 512


def _environ_key(raw_name: bytes) -> str:
    name = raw_name.decode("latin-1").upper().replace("-", "_")
    key = name if name == "CONTENT_TYPE" or name == "CONTENT_LENGTH" else "HTTP_" + name
    if len(_KEYS) >= _KEYS_MAX:
        _KEYS.clear()
    _KEYS[raw_name] = key
    return key


def build_environ(scope: Scope, body: Any) -> Dict[str, Any]:
    """The PEP 3333 environ for an ASGI HTTP ``scope``; ``body``: the ``wsgi.input`` stream."""
    script_name, path_info = wsgi_path(scope)
    server = scope.get("server") or None
    client = scope.get("client") or None
    version = scope.get("http_version", "1.1")
    environ: Dict[str, Any] = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path_info,
        "QUERY_STRING": scope.get("query_string", b"").decode("latin-1"),
        "CONTENT_TYPE": "",
        "CONTENT_LENGTH": "",
        "SERVER_PROTOCOL": "HTTP/1.1" if version == "1.1" else "HTTP/" + version,
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": body,
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.file_wrapper": FileWrapper,
        "fnserve.route_params": dict(scope.get("fnserve.route_params") or ()),
    }
    if client:
        environ["REMOTE_ADDR"] = str(client[0])
        environ["REMOTE_PORT"] = str(client[1])
    keys = _KEYS
    for raw_name, raw_value in scope.get("headers", ()):
        key = keys.get(raw_name) or _environ_key(raw_name)
        value = raw_value.decode("latin-1")
        if key in environ:
            if key == "CONTENT_TYPE" or key == "CONTENT_LENGTH":
                environ[key] = value
                continue
            value = environ[key] + ("; " if key == "HTTP_COOKIE" else ",") + value
        environ[key] = value
    if server and server[1] is not None:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = str(server[0]), str(server[1])
    else:
        host = environ.get("HTTP_HOST", "localhost")
        name, _, port = host.rpartition(":") if host.rpartition(":")[2].isdigit() else (host, "", "")
        default = "443" if environ["wsgi.url_scheme"] == "https" else "80"
        environ["SERVER_NAME"], environ["SERVER_PORT"] = name or host, port or default
    return environ


class _Response:
    """start_response/write state of one request, on the worker thread."""

    def __init__(self, outbox: Outbox) -> None:
        self.outbox = outbox
        self.start: Optional[Dict[str, Any]] = None
        self.sent = False
        self.finished = False
        self.remaining: Optional[int] = None

    def start_response(self, status: str, headers: List[Tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None:
            try:
                if self.sent:
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif self.start is not None:
            raise AssertionError("start_response() called a second time without exc_info (PEP 3333)")
        try:
            code = int(status.split(" ", 1)[0])
        except ValueError:
            raise ValueError("WSGI status %r: expected e.g. '200 OK'" % (status,)) from None
        encoded = []
        self.remaining = None
        for name, value in headers:
            lname = name.lower().encode("latin-1")
            if lname == b"content-length":
                try:
                    self.remaining = int(value)
                except ValueError:
                    pass
            encoded.append((lname, value.encode("latin-1")))
        self.start = {"type": "http.response.start", "status": code, "headers": encoded}
        return self.write

    def write(self, data: bytes, last: bool = False) -> None:
        """Send ``data`` now (PEP 3333 write(); also each iterable chunk). ``last``: no more body."""
        if self.start is None:
            raise AssertionError("write() before start_response() (PEP 3333)")
        if self.finished:
            return
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError("WSGI body chunks must be bytes, got %s" % type(data).__name__)
        if self.remaining is not None:
            data = data[: self.remaining]
            self.remaining -= len(data)
            last = last or self.remaining == 0
        if not data and not last:
            return
        messages = []
        if not self.sent:
            messages.append(self.start)
            self.sent = True
        messages.append({"type": "http.response.body", "body": bytes(data), "more_body": not last})
        self.finished = last
        self.outbox.put(messages)

    def finish(self) -> None:
        if not self.finished:
            self.write(b"", last=True)


class WSGIAdapter:
    """ASGI 3 app serving the WSGI ``app`` in ``executor`` threads; ``body_limit``: bytes (0 =
    none); ``label``: the function id for log lines. Non-HTTP scopes: websockets are refused."""

    def __init__(self, app: Any, *, executor: Any, body_limit: int = 0, label: str = "?") -> None:
        self.app = app
        self.executor = executor
        self.body_limit = body_limit
        self.label = label
        self.inflight = InFlight()

    async def shutdown(self, timeout: float = 30.0) -> None:
        await self.inflight.wait(timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" and await refuse_non_http(scope, receive, send):
            return
        if self.body_limit and await refuse_declared_oversize(scope, send, self.body_limit):
            return
        await run_threaded(self.executor, self.inflight, self.body_limit, receive, send,
                           functools.partial(self._run, scope), head=scope["method"] == "HEAD")

    def _run(self, scope: Scope, reader: BodyReader, outbox: Outbox) -> None:
        response = _Response(outbox)
        error: Optional[BaseException] = None
        try:
            environ = build_environ(scope, reader)
            result = self.app(environ, response.start_response)
            try:
                self._iterate(result, response, outbox)
            finally:
                close = getattr(result, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # a started WSGI response has no "finished" before close()
            error = outbox.settle(exc, response.sent, False, self.label, "the WSGI application")
        finally:
            outbox.done(error)
            self.inflight.exit()


    @staticmethod
    def _iterate(result: Any, response: _Response, outbox: Outbox) -> None:
        if isinstance(result, FileWrapper):
            read = result.filelike.read
            while not outbox.closed:
                block = read(max(result.blksize, FILE_BLOCK))
                if not block:
                    break
                response.write(block)
        elif isinstance(result, (list, tuple)):
            last = len(result) - 1
            for i, chunk in enumerate(result):
                response.write(chunk, last=i == last)
        else:
            for chunk in result:
                response.write(chunk)
        if response.start is None:
            raise RuntimeError("the WSGI application returned without calling start_response()")
        response.finish()
