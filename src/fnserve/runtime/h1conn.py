"""One client connection of the worker's direct server (``runtime.direct``): reading, the HTTP/1.1
head parse, the plain-request check, writing, hand-back and close. Each request it serves is an
``h1exchange.Exchange`` (the app call, ``receive``/``send``, the response writer).

Pure Python, stdlib only, Python 3.9+. The socket is read with ``loop.add_reader`` into a buffer
that stays under ``READ_SIZE`` unserved bytes (at most ``2 * READ_SIZE`` after one read), so a
hand-back always fits one ``DIRECT_MAX_PACKET`` packet. Requests are served one after the other
(pipelining: the next head is parsed once the response before it is complete); the app call of a
request may still run after its response completed (as uvicorn). Error answers and their strings
are the front's (``server.errorpages.render``, ``server.observe.runtime_error``,
``errors.FunctionFailed.PUBLIC_MESSAGE``, ``errors.DurationExceeded``, ``server.frontdoor``): a
client cannot tell the two paths apart (tests/runtime/test_direct.py compares them).
"""

import asyncio
import os
import random
import re
import socket
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Tuple, Union
from urllib.parse import quote, unquote

from .h1exchange import ERROR_STRINGS, STATUS_LINES, Exchange

if TYPE_CHECKING:  # pragma: no cover
    from .direct import DirectPlan, DirectServer

DIRECT_MAX_PACKET = 256 * 1024  # bytes of one SEQPACKET message, both directions
READ_SIZE = 65536  # bytes per recv; reading pauses while this much is buffered and unserved
DISCARD_MAX = 4 * READ_SIZE  # request body bytes the app left unread that are skipped, not a close

_TCHAR = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
# origin-form target: visible ASCII without '"' and '#'; only HTTP/1.1
# the methods the front's parser (llhttp, through httptools) takes with an origin-form target: any
# other token gets the front's 400, so it is handed back
_METHODS = rb"DELETE|GET|HEAD|POST|PUT|OPTIONS|TRACE|COPY|LOCK|MKCOL|MOVE|PROPFIND|PROPPATCH|SEARCH|UNLOCK|BIND|" \
    rb"REBIND|UNBIND|ACL|REPORT|MKACTIVITY|CHECKOUT|MERGE|M-SEARCH|NOTIFY|SUBSCRIBE|UNSUBSCRIBE|PATCH|PURGE|" \
    rb"MKCALENDAR|LINK|UNLINK|SOURCE|QUERY"
_REQUEST_LINE = re.compile(rb"(" + _METHODS + rb") (/[!\x24-\x7e]*) HTTP/1\.1\r\n")
# header fields: token ":" value of HTAB / SP / VCHAR / obs-text; no obs-fold, bare CR/LF or NUL
_FIELDS = re.compile(rb"(?:" + _TCHAR + rb":[\t\x20-\x7e\x80-\xff]*\r\n)*")
# one field: name, value without its leading and trailing whitespace (as llhttp + uvicorn give it)
_FIELD = re.compile(rb"(" + _TCHAR + rb"):[ \t]*((?:[\x21-\x7e\x80-\xff]+(?:[ \t]+[\x21-\x7e\x80-\xff]+)*)?)[ \t]*\r\n")
VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")  # = server.observe._VALID_ID
_SPECIAL = frozenset((b"content-length", b"connection", b"transfer-encoding", b"upgrade", b"expect", b"x-request-id"))
_ids = random.Random(os.urandom(32))  # request ids: labels, not secrets (as server.observe)
os.register_at_fork(after_in_child=lambda: _ids.seed(os.urandom(32)))  # zygote children: ids of their own


LINE_CACHE = 1024  # request lines whose parse and route decision are kept (per plan)
Request = Tuple[str, bytes, bytes, str, bytes, str, Dict[str, str]]


def _request_line(plan: "DirectPlan", line: bytes) -> Union[Request, Tuple[()]]:
    """A request line (with its CRLF) → ``(method, target, raw_path, path, query_string,
    root_path, route_params)`` of the scope when it is plain (module docstring) and routes to this
    function, else ``()`` (hand back). ``query_string``: the original, then the Vercel-layout
    route params as ``server.app.function_scope`` adds them."""
    match = _REQUEST_LINE.fullmatch(line)
    if match is None:
        return ()
    method, target = match.groups()
    raw_path, _, query = target.partition(b"?")
    path = raw_path.decode("ascii")
    if "%" in path:
        path = unquote(path)
    found = plan.route(path)
    if found is None:
        return ()
    route, params, root = found
    layout = route.get("layout")
    if params and layout == "vercel":
        keys = route.get("query_keys") or {}
        parts = [query] if query else []
        parts.extend(("%s=%s" % (quote(keys.get(k, k), safe="[]"), quote(v, safe=""))).encode("ascii")
                     for k, v in params.items())
        query = b"&".join(parts)
    return method.decode("ascii"), target, raw_path, path, query, root if layout == "edgeone" else "", params


class H1Conn:
    """A passed client connection (see the module docstring). ``start()`` begins serving the
    buffered ``data``; ``hand_back()`` / ``close()`` end it (an H or X packet to the front);
    ``check(now)`` applies the timeouts (called by the server's sweep)."""

    __slots__ = ("server", "loop", "conn_id", "tag", "sock", "fd", "buf", "reading", "writing", "frozen",
                 "out", "out_size", "closed", "eof", "exchange", "after_write", "drainers", "deadline",
                 "deadline_kind", "client", "local", "discard", "slot", "state")

    def __init__(self, server: "DirectServer", conn_id: int, sock: socket.socket, data: bytes) -> None:
        self.server = server
        self.loop = server.loop
        self.conn_id = conn_id
        self.tag = conn_id.to_bytes(8, "big")
        self.sock = sock
        self.fd = sock.fileno()
        self.buf = bytearray(data)
        self.reading = self.writing = self.frozen = self.closed = self.eof = False
        self.out: List[bytes] = []
        self.out_size = 0
        self.exchange: Optional[Exchange] = None
        self.after_write: Optional[Callable[[], None]] = None
        self.drainers: List["asyncio.Future[None]"] = []
        self.deadline = 0.0
        self.deadline_kind = 0  # 1: idle (keep_alive → close), 2: partial head (header_timeout → 408, close)
        self.client: Optional[Tuple[str, int]] = None
        self.local: Optional[Tuple[str, int]] = None
        self.discard = 0  # body bytes of the last request its app left unread, to skip
        # its slot in the front's table (runtime.slotwriter) and what it says: 0 idle, 1 request, -1 responding
        self.slot = conn_id & 0xFFFFFFFF
        self.state = 0

    def start(self) -> None:
        try:
            self.sock.setblocking(False)
            peer, local = self.sock.getpeername(), self.sock.getsockname()
        except OSError:
            self.close()
            return
        if isinstance(peer, tuple):
            self.client = (str(peer[0]), int(peer[1]))
            try:  # as uvicorn / uvloop: small responses leave at once
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:  # pragma: no cover
                pass
        if isinstance(local, tuple):
            self.local = (str(local[0]), int(local[1]))
        self.next()

    # -- reading
    def update_reading(self) -> None:
        want = not (self.closed or self.eof or self.frozen) and len(self.buf) < READ_SIZE
        if want != self.reading:
            self.reading = want
            if want:
                self.loop.add_reader(self.fd, self._readable)
            else:
                self.loop.remove_reader(self.fd)

    def _readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._client_gone()
            return
        self.buf += data
        if len(self.buf) >= READ_SIZE:
            self.update_reading()
        exchange = self.exchange
        if exchange is not None:
            waiter = exchange.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
        elif self.discard:
            self._skip()
        else:
            self.next()

    def _client_gone(self) -> None:
        self.eof = True
        self.update_reading()
        exchange = self.exchange
        if exchange is None:
            self.close()
        else:
            exchange.client_left()

    # -- the next request
    def next(self) -> None:
        """Parse the next request head in the buffer: serve it, hand the connection back, or
        wait for more bytes."""
        if self.closed or self.exchange is not None or self.frozen:
            return
        server = self.server
        plan = server.plan
        if server.stopping or plan is None or server.exhausted:
            self.hand_back()
            return
        buf = self.buf
        if not buf:
            if self.eof:
                self.close()
                return
            self.deadline_kind, self.deadline = 1, server.clock + plan.keep_alive
            if not self.reading:
                self.update_reading()
            return
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if self.eof or len(buf) >= min(plan.header_limit, READ_SIZE):
                self.hand_back()
                return
            if self.deadline_kind != 2:
                self.deadline_kind, self.deadline = 2, server.clock + plan.header_timeout
            self.update_reading()
            return
        if end + 4 > plan.header_limit:
            self.hand_back()
            return
        head = bytes(buf[:end + 2])
        start = head.find(b"\r\n") + 2
        lines = plan.lines
        request = lines.get(head[:start])
        if request is None:
            request = _request_line(plan, head[:start])
            if len(lines) >= LINE_CACHE:
                lines.clear()
            lines[head[:start]] = request
        if not request or _FIELDS.fullmatch(head, start) is None:
            self.hand_back()
            return
        headers = [(name.lower(), value) for name, value in _FIELD.findall(head, start)]
        if len(headers) > plan.header_count:
            self.hand_back()
            return
        length = -1
        close = False
        request_id = None
        for name, value in headers:
            if name in _SPECIAL:
                if name == b"content-length":
                    if length >= 0 or not value.isdigit() or len(value) > 18:  # int() of 4300+ digits raises
                        self.hand_back()
                        return
                    length = int(value)
                elif name == b"connection":
                    close = close or b"close" in [t.strip() for t in value.lower().split(b",")]
                elif name == b"x-request-id":
                    if request_id is None:
                        request_id = value
                else:  # transfer-encoding, upgrade, expect
                    self.hand_back()
                    return
        if length < 0:
            length = 0
        elif plan.body_limit is not None and length > plan.body_limit:
            self.hand_back()
            return
        # plain and ours: from here on the bytes are consumed
        del buf[:end + 4]
        slots = server.slots
        if slots is not None:
            slots.start(self.slot)
            self.state = 1
        self.deadline_kind = 0
        if request_id is None or VALID_REQUEST_ID.fullmatch(request_id) is None:
            if request_id is not None:
                headers = [(k, v) for k, v in headers if k != b"x-request-id"]
            request_id = b"%016x" % _ids.getrandbits(64)
            headers.append((b"x-request-id", request_id))
        method, target, raw_path, path, query_string, root_path, params = request
        scope = {
            "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "server": self.local, "client": self.client, "scheme": "http",
            "root_path": root_path, "headers": headers, "method": method,
            "path": path, "raw_path": raw_path, "query_string": query_string,
            "fnserve.route_params": dict(params) if params else {},
        }
        self.exchange = Exchange(self, scope, request_id, target, length, close, plan.max_duration)
        if not self.reading:
            self.update_reading()  # to see the client leave while the app runs

    def _skip(self) -> None:
        """Drop the body bytes the last request's app did not read, then go on."""
        buf = self.buf
        n = min(len(buf), self.discard)
        del buf[:n]
        self.discard -= n
        if self.discard:
            if self.eof:
                self.close()
            else:
                self.update_reading()
            return
        if not self.out and self.exchange is None:
            self._idle()
        self.next()

    def response_done(self, exchange: "Exchange") -> None:
        """The response of ``exchange`` is complete: the next request (or close / hand back)."""
        if self.exchange is exchange:
            self.exchange = None
        if not self.out and not exchange.body_left:
            self._idle()  # else the slot stays "responding" until nothing is owed either way (the front cuts)
        if self.closed:
            return
        if not exchange.keep_alive or self.eof or exchange.body_left > DISCARD_MAX:
            self.close_after_write()
            return
        self.discard = exchange.body_left
        if self.discard:
            plan = self.server.plan  # a client that stops sending the body it owes is closed
            self.deadline_kind, self.deadline = 1, self.server.clock + (plan.body_timeout if plan is not None else 30.0)
            self._skip()
        else:
            self.next()

    # -- timers
    def check(self, now: float) -> None:
        exchange = self.exchange
        if exchange is not None:
            if exchange.expires and now >= exchange.expires:
                exchange.expire()
            elif exchange.waiter is not None and exchange.body_deadline and now >= exchange.body_deadline:
                exchange.body_timed_out()
        elif self.deadline_kind and now >= self.deadline and not self.frozen:
            if self.deadline_kind == 2:
                self.head_timed_out()
            else:
                self.close()

    def head_timed_out(self) -> None:
        """A request head started and not complete within ``header_timeout``: the front's 408
        (text) and close, here (handed back, the front would start its own timer again)."""
        plan = self.server.plan
        body = (ERROR_STRINGS["head_408"] % ("%g" % (plan.header_timeout if plan is not None else 10.0))).encode("ascii")
        self.deadline_kind = 0
        self.write(b"".join([STATUS_LINES[408], b"content-type: text/plain; charset=utf-8\r\n",
                             b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]))
        self.close_after_write()

    # -- writing
    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if self.state == 1:  # the response's first bytes: the front can no longer answer for it
            self.state = -1
            slots = self.server.slots
            if slots is not None:
                slots.responding(self.slot)
        if self.out:
            self.out.append(data)
            self.out_size += len(data)
            return
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError:
            self.close()
            return
        if n < len(data):
            rest = data[n:] if n else data
            self.out.append(rest)
            self.out_size += len(rest)
            if not self.writing:
                self.writing = True
                self.loop.add_writer(self.fd, self._writable)

    def _writable(self) -> None:
        data = b"".join(self.out) if len(self.out) > 1 else self.out[0]
        try:
            n = self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self.close()
            return
        if n < len(data):
            self.out = [data[n:]]
            self.out_size = len(data) - n
            return
        self.out = []
        self.out_size = 0
        self.writing = False
        self.loop.remove_writer(self.fd)
        self._wake_drainers()
        if self.exchange is None and not self.discard:
            self._idle()  # the last response's bytes are out
        after, self.after_write = self.after_write, None
        if after is not None:
            after()

    def _wake_drainers(self) -> None:
        drainers, self.drainers = self.drainers, []
        for waiter in drainers:
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until the unsent response bytes are written (or the connection closed)."""
        if self.out and not self.closed:
            waiter = self.loop.create_future()
            self.drainers.append(waiter)
            await waiter

    # -- the end
    def _idle(self) -> None:
        if self.state:
            self.state = 0
            slots = self.server.slots
            if slots is not None:
                slots.idle(self.slot)

    def _detach(self) -> None:
        self._idle()
        self.closed = self.frozen = True
        if self.reading:
            self.reading = False
            self.loop.remove_reader(self.fd)
        if self.writing:
            self.writing = False
            self.loop.remove_writer(self.fd)
        self._wake_drainers()
        self.server.forget(self)

    def hand_back(self) -> None:
        """Give the connection back to the front (packet H) with the bytes read and not served,
        once the previous response is fully written."""
        if self.closed or self.discard or self.after_write == self.close:
            return  # not at a request boundary (body bytes owed), or a close is due: that finishes it
        self.frozen = True
        self.update_reading()
        if self.out:
            self.after_write = self.hand_back
            return
        packet = b"H" + self.tag + bytes(self.buf)
        if len(packet) > DIRECT_MAX_PACKET:  # cannot happen with READ_SIZE reads; never send a cut request
            self.close()
            return
        self._detach()
        self.server.send_packet(packet, self.sock)

    def close_after_write(self) -> None:
        self.frozen = True
        self.update_reading()
        if self.out and not self.closed:
            self.after_write = self.close
        else:
            self.close()

    def close(self) -> None:
        """Close the connection now (packet X); a request in progress sees ``http.disconnect``."""
        if self.closed:
            return
        self._detach()
        try:
            # the front holds a duplicate of this socket (to answer 502/504 if this instance
            # dies): closing ours alone would not end the connection
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:  # pragma: no cover
            pass
        self.server.send_packet(b"X" + self.tag)
        exchange = self.exchange
        if exchange is not None:
            exchange.client_left()
