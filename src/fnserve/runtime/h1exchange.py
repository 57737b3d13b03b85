"""One request served on a direct-path connection (``h1conn.H1Conn``): the app call, its ASGI
``receive``/``send``, the response writer and the request's report line, and the error answers.

Error answers and their strings are the front's (``server.errorpages.render``,
``server.observe.runtime_error``, ``errors.FunctionFailed.PUBLIC_MESSAGE``,
``errors.DurationExceeded``, ``server.frontdoor``, uvicorn's own 500): a client cannot tell the
direct path from the frames path (tests/runtime/test_direct.py compares them). Stdlib only,
Python 3.9+.
"""

import asyncio
import json
import re
import time
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

from .asgitypes import Message

if TYPE_CHECKING:  # pragma: no cover
    from .h1conn import H1Conn

REPORT_BATCH = 64  # requests per REPORT frame at most
PREREAD = 65536  # body bytes buffered before the app runs (at most what h1conn buffers: its READ_SIZE)
HIGH_WATER = 256 * 1024  # bytes of unsent response: send() waits until they are written
# The front's strings, copied (the runtime imports nothing outside itself); test_direct.py checks them.
ERROR_STRINGS = {
    "public_500": "the function failed while handling the request; the server log has the details",
    "raised_500": "%s raised %s",  # FunctionFailed.message: function id, "Type: text"
    "timeout_504": "%s did not answer within its maxDuration of %s s",  # DurationExceeded.message (%g)
    "body_408": "Request body stalled for %s s.",  # server.frontdoor body timeout (%g)
    "head_408": "Request headers not received within %s s.",  # server.frontdoor header timeout (%g)
    "uvicorn_500": "Internal Server Error",  # uvicorn: the app returned without starting a response
    # server.observe: the grace period of a stop was over before the response started
    "cut_off_503": "the server stopped before this request finished (its grace period was over); retry it",
}
RUNTIME_CODES = {"function_error": "FUNCTION_INVOCATION_FAILED", "body_too_large": "FUNCTION_PAYLOAD_TOO_LARGE",
                 "method_not_allowed": "METHOD_NOT_ALLOWED"}  # = server.observe.RUNTIME_CODES
ERROR_CODES = {405: "METHOD_NOT_ALLOWED", 413: "FUNCTION_PAYLOAD_TOO_LARGE", 500: "FUNCTION_INVOCATION_FAILED",
               503: "FUNCTION_THROTTLED", 504: "FUNCTION_INVOCATION_TIMEOUT"}  # ⊂ server.errorpages.CODES
RUNTIME_STATUSES = (405, 413, 500)  # = server.observe._RUNTIME_STATUSES
HELD_LIMIT = 65536  # = server.observe._HELD_LIMIT

# response headers (lower-cased names, after a "\n"): Connection values
_CONNECTION = re.compile(rb"\nconnection: *([^\r]*)\r")
# what uvicorn's httptools protocol refuses in the app's response headers (its HEADER_RE and
# HEADER_VALUE_RE: the frames path drops the connection then): in a name, controls, separators
# and whitespace; in a value, controls other than HTAB
_BAD_NAME = re.compile(b'[\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]')
_BAD_VALUE = re.compile(b"[\x00-\x08\x0a-\x1f\x7f]")
# the same over all the fields at once, joined as b"name\0value\r\n" (one scan instead of two per header;
# with one NUL per header the lines are the headers: a NUL, CR or LF inside a name or value fails)
_VALID_FIELDS = re.compile(b'(?:[^\x00-\x1f\x7f()<>@,;:\\[\\]={} \t\\\\"]*\x00[^\x00-\x08\x0a-\x1f\x7f]*\r\n)*').fullmatch
def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase.encode()
    except ValueError:
        phrase = b""
    return b"HTTP/1.1 %d %s\r\n" % (status, phrase)


STATUS_LINES = {s.value: _status_line(s.value) for s in HTTPStatus}


def render_error(status: int, message: str, request_id: Optional[str], code: Optional[str] = None) -> Tuple[List[Tuple[bytes, bytes]], bytes]:
    """``server.errorpages.render`` (its JSON form): ``(headers, body)`` of an fnserve error answer."""
    code = code or ERROR_CODES.get(status, "ERROR")
    error = {"code": code, "message": message}
    if request_id:
        error["request_id"] = request_id
    body = json.dumps({"error": error}).encode()
    return [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"), (b"x-fnserve-error", code.encode())], body


def runtime_error(status: int, headers: Any, body: bytes, request_id: str, public: bool) -> Optional[Tuple[List[Any], bytes]]:
    """``server.observe.runtime_error``: an error answer made by the function runtime
    (``{"error": {"code": "function_error", "message"}}``) in fnserve's vocabulary, or None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) and len(data) == 1 else None
    code = RUNTIME_CODES.get(str(error.get("code"))) if isinstance(error, dict) else None
    if error is None or code is None:
        return None
    message = str(error.get("message", ""))
    if public and status >= 500:
        message = ERROR_STRINGS["public_500"]
    extra, new_body = render_error(status, message, request_id if status >= 500 else None, code)
    kept = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-length")]
    return kept + extra, new_body


def _small_json(headers: Any) -> bool:
    """``server.observe._small_json``: JSON with a ``Content-Length`` up to ``HELD_LIMIT``."""
    json_type = small = False
    for name, value in headers:
        if name == b"content-type":
            json_type = value == b"application/json"
        elif name == b"content-length":
            small = value.isdigit() and int(value) <= HELD_LIMIT
    return json_type and small


class UnwritableHeader(RuntimeError):
    """A response header name or value that is neither latin-1 text nor something ``bytes()``
    takes (None, a float, "€"...): on the frames path the worker or the front fails to carry it
    before uvicorn saw a response start, and uvicorn answers its plain 500 (``uvicorn_500``); the
    direct path answers the same."""


def _as_bytes(headers: Any, exchange: "Exchange") -> List[Tuple[bytes, bytes]]:
    """``headers`` as the frames path carries them: a ``str`` encoded as latin-1, anything else
    through ``bytes()`` (an int ``n`` becomes ``n`` NULs, refused later). ``UnwritableHeader``
    for a str that is not latin-1, a negative or huge int, or what ``bytes()`` refuses (the
    frames path answers those with uvicorn's 500); ``RuntimeError`` for an item that is not a
    pair. ``exchange.on_wire`` is reset when raising."""
    out = []
    for pair in headers:
        items = []
        for item in pair:
            try:
                if isinstance(item, str):
                    items.append(item.encode("latin-1"))
                elif isinstance(item, int) and not 0 <= item <= HELD_LIMIT:
                    raise ValueError("%d: not a length bytes() should allocate" % item)
                else:
                    items.append(bytes(item))
            except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
                exchange.on_wire = False
                raise UnwritableHeader("response header names and values must be bytes or latin-1 str, got %r (%s)"
                                       % (pair, exc)) from None
        if len(items) != 2:
            exchange.on_wire = False
            raise RuntimeError("a response header is a (name, value) pair, got %r" % (pair,))
        out.append((items[0], items[1]))
    return out


def _invalid_header(headers: Any) -> str:
    """The ``RuntimeError`` text for the first header ``_BAD_NAME`` / ``_BAD_VALUE`` refuses."""
    for name, value in headers:
        if _BAD_NAME.search(name):
            return ("Invalid HTTP header name %r in the response: no control characters, whitespace or "
                    "separators ()<>@,;:\\\"[]={}" % name)
        if _BAD_VALUE.search(value):
            return "Invalid HTTP header value %r for %r in the response: no control characters but HTAB" % (
                value, name)
    return "Invalid HTTP header in the response"


class Exchange:
    """One request on an ``H1Conn``: the app task, its ASGI ``receive``/``send``, the response
    writer and the request's report line."""

    # no __slots__: the class attributes below are the defaults, __init__ sets only the rest (faster)
    body_done = keep_alive = started = complete = gone = head_pending = on_wire = False
    bodiless = chunked = reported = False
    status = 0
    headers: Any = ()
    held: Optional[List[bytes]] = None  # body chunks of a possible runtime error answer
    held_chunks = 0
    length_left = -1  # response bytes still owed (Content-Length), -1: no length
    waiter: Optional["asyncio.Future[None]"] = None
    body_deadline = 0.0  # monotonic s by which body bytes must come (while receive() waits)
    expires = 0.0  # monotonic s: max_duration is over

    def __init__(self, conn: "H1Conn", scope: Dict[str, Any], request_id: bytes, target: bytes, length: int,
                 close: bool, max_duration: Optional[float]) -> None:
        self.conn = conn
        self.scope = scope
        self.request_id = request_id.decode("ascii")
        self.rid_line = b"x-fnserve-request-id: " + request_id + b"\r\n"
        self.target = target
        self.body_left = length
        if not close:
            self.keep_alive = True
        self.t0 = time.monotonic()
        if max_duration:
            self.expires = self.t0 + max_duration
        slots = conn.server.slots
        if slots is not None:  # for the front's answer if this instance dies before the response starts
            slots.describe(conn.slot, request_id, scope["method"], target)
        self.task = conn.loop.create_task(self.run())
        conn.server.tasks.add(self.task)

    # -- the app
    async def _preread(self) -> bool:
        """Wait until the body is buffered (up to ``PREREAD`` bytes) before the app runs, as the
        front does (issue 10 item 4: a slow client must not hold a function slot while it
        trickles its body in); ``body_timeout`` per pause. False: the client left or timed out."""
        conn = self.conn
        want = min(self.body_left, PREREAD)
        while len(conn.buf) < want:
            if self.gone or conn.eof or conn.closed:
                return False
            await self._wait(True)
        self.body_deadline = 0.0
        if self.gone:
            return False
        if self.expires:  # maxDuration counts from the dispatch, as on the frames path
            plan = conn.server.plan
            self.expires = time.monotonic() + (plan.max_duration or 0.0) if plan is not None else self.expires
        slots = conn.server.slots
        if slots is not None and conn.state == 1:
            slots.restart(conn.slot)
        return True

    async def run(self) -> None:
        server = self.conn.server
        try:
            if self.body_left and len(self.conn.buf) < min(self.body_left, PREREAD) and not await self._preread():
                if not self.complete:
                    self._ended(False)
                return
            await server.app(self.scope, self.receive, self.send)
        except asyncio.CancelledError:
            if server.stopping and not self.started and not self.gone and not self.complete:
                self.cut_off()
            else:
                self._ended(False)
        except BaseException as exc:  # noqa: B902 - report everything the app raises, then go on
            server.on_error(exc)
            if not self.on_wire and not self.gone and not self.complete:
                plan = server.plan
                public = plan is None or plan.public_errors
                message = ERROR_STRINGS["public_500"] if public else ERROR_STRINGS["raised_500"] % (
                    plan.function if plan is not None else "the function", "%s: %s" % (type(exc).__name__, exc))
                if isinstance(exc, UnwritableHeader):  # the frames path's worker raised at the start
                    self.uvicorn_500()
                elif self.started:  # started, nothing written yet: the frames path closes the connection
                    self._ended(False)
                else:
                    self.error_answer(500, message)
            else:
                self._ended(False)
        else:
            if not self.started and not self.gone:
                self.uvicorn_500()
            elif not self.complete:
                self._ended(False)
        finally:
            server.tasks.discard(self.task)
            if server.idle_waiters:
                server.check_idle()

    def _ended(self, complete: bool) -> None:
        """The app is done or gone without completing its response: cut the connection."""
        if not self.complete:
            self.finish_report()
            conn = self.conn
            if conn.exchange is self:
                conn.exchange = None
            conn.close()

    def finish_report(self) -> None:
        if not self.reported:
            self.reported = True
            server = self.conn.server
            status = self.status if self.complete else 0
            server.reports.append((self.request_id, self.scope["method"], self.target, status,
                                   time.monotonic() - self.t0))
            if server.count(status):
                return  # its last request: the report went at once
            if server.report_timer is None or len(server.reports) >= REPORT_BATCH:
                server.reported()

    # -- ASGI receive
    async def receive(self) -> Message:
        while True:
            if self.gone or self.complete:
                return {"type": "http.disconnect"}
            conn = self.conn
            if not self.body_done:
                left = self.body_left
                if not left:
                    self.body_done = True
                    return {"type": "http.request", "body": b"", "more_body": False}
                buf = conn.buf
                if buf:
                    if len(buf) <= left:
                        chunk = bytes(buf)
                        buf.clear()
                    else:
                        chunk = bytes(buf[:left])
                        del buf[:left]
                    left -= len(chunk)
                    self.body_left = left
                    self.body_done = not left
                    self.body_deadline = 0.0
                    conn.update_reading()
                    return {"type": "http.request", "body": chunk, "more_body": left > 0}
            await self._wait(not self.body_done)

    async def _wait(self, body: bool) -> None:
        """Until the connection wakes this exchange (bytes came, the client left, a timer); with
        ``body``: body bytes are owed, ``body_timeout`` s from now (``H1Conn.check``)."""
        conn = self.conn
        if body:
            plan = conn.server.plan
            self.body_deadline = time.monotonic() + (plan.body_timeout if plan is not None else 30.0)
        waiter = self.waiter = conn.loop.create_future()
        try:
            await waiter
        finally:
            self.waiter = None

    def client_left(self) -> None:
        self.gone = True
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        if not self.complete:
            self.finish_report()

    # -- ASGI send
    async def send(self, message: Message) -> None:
        mtype = message["type"]
        if mtype == "http.response.body":
            if self.gone:
                return
            if not self.started or self.complete:
                raise RuntimeError("Unexpected ASGI message 'http.response.body' sent, %s." % (
                    "after response already completed" if self.complete else "before 'http.response.start'"))
            self.write_body(message.get("body", b""), message.get("more_body", False))
            conn = self.conn
            if conn.out_size > HIGH_WATER:
                await conn.drain()
        elif mtype == "http.response.start":
            if self.gone:
                return
            if self.started:
                raise RuntimeError("Unexpected ASGI message 'http.response.start' sent, after response already started.")
            self.started = True
            self.status = int(message["status"])
            headers = message.get("headers", ())
            if type(headers) is not list and type(headers) is not tuple:
                headers = list(headers)  # any iterable of pairs, read once (SPEC §4)
            self.headers = headers
            if self.status in RUNTIME_STATUSES and _small_json(headers):
                self.held = []
                return
            self.head_pending = True
            self.conn.server.head_pending(self)  # written at the end of this step unless the body comes in it
        else:
            if self.gone:
                return
            raise RuntimeError("Unexpected ASGI message '%s' sent on an HTTP connection." % mtype)

    def flush_head(self) -> None:
        """Write the response head alone (the body did not come in the step that started it)."""
        if self.head_pending and not self.gone:
            try:
                head = self._head()
            except UnwritableHeader as exc:  # as the frames path answers it (its worker raised)
                self.conn.server.on_error(exc)
                self.uvicorn_500()
                return
            except RuntimeError as exc:  # bad response headers: as uvicorn, the connection is dropped
                self.conn.server.on_error(exc)
                self._ended(False)
                return
            self.conn.write(head)

    def _head(self) -> bytes:
        """The status line and headers (as uvicorn writes them behind the front's observer:
        ``date`` first, names lower-cased, then ``x-fnserve-request-id``, ``connection: close``
        and ``transfer-encoding: chunked`` when due). Names and values are bytes, or ``str``
        taken as latin-1 (as the frames path carries them). Raises ``RuntimeError`` (nothing
        written; the caller drops the connection, as uvicorn does on the frames path) for what
        uvicorn refuses (``_BAD_NAME``, ``_BAD_VALUE``: CR or LF would split the response), a
        name or value that is neither, or a bad ``Content-Length``."""
        self.head_pending = False
        self.on_wire = True
        status = self.status
        headers = self.headers
        try:
            fields = b"".join([b"%s\0%s\r\n" % (name.lower(), value) for name, value in headers])
        except (TypeError, AttributeError, ValueError):  # str, memoryview...: as the frames path converts them
            headers = self.headers = _as_bytes(headers, self)
            fields = b"".join([b"%s\0%s\r\n" % (name.lower(), value) for name, value in headers])
        if fields.count(b"\0") != len(headers) or _VALID_FIELDS(fields) is None:
            self.on_wire = False
            raise RuntimeError(_invalid_header(headers))
        fields = fields.replace(b"\0", b": ")
        length = -1
        chunked = False
        if fields:
            probe = b"\n" + fields
            at = probe.find(b"\ncontent-length:")
            te = probe.find(b"\ntransfer-encoding:")
            if te >= 0 and (at < 0 or te < at):  # the first of them decides, as in uvicorn
                chunked = probe[te + 19:probe.index(b"\r", te)].strip().lower() == b"chunked"
            elif at >= 0:
                value = probe[at + 16:probe.index(b"\r", at)]
                try:
                    length = int(value)  # int() ignores surrounding whitespace
                except ValueError:
                    self.on_wire = False
                    raise RuntimeError("invalid Content-Length %r in the response" % value) from None
            if b"\nconnection:" in probe:
                for value in _CONNECTION.findall(probe):
                    if b"close" in [t.strip() for t in value.lower().split(b",")]:
                        self.keep_alive = False
                        break
                else:
                    probe = b""
            else:
                probe = b""
        parts = [STATUS_LINES.get(status) or _status_line(status), self.conn.server.date, fields, self.rid_line]
        if not self.keep_alive and not probe:  # no connection: close from the app
            parts.append(b"connection: close\r\n")
        self.bodiless = status in (204, 304) or status < 200 or self.scope["method"] == "HEAD"
        if chunked:
            self.chunked = True
        elif length < 0 and not self.bodiless:
            self.chunked = True
            parts.append(b"transfer-encoding: chunked\r\n")
        else:
            self.length_left = length
        parts.append(b"\r\n")
        return b"".join(parts)

    def write_body(self, body: Any, more: bool) -> None:
        if self.held is not None:
            self.held.append(bytes(body))
            self.held_chunks += len(body)
            if more and self.held_chunks <= HELD_LIMIT:
                return
            body = b"".join(self.held)
            self.held = None
            plan = self.conn.server.plan
            answer = None if more else runtime_error(self.status, self.headers, body, self.request_id,
                                                     plan is None or plan.public_errors)
            if answer is not None:
                self.headers, body = answer
            self.head_pending = True
        elif type(body) is not bytes:
            body = bytes(body)
        out = [self._head()] if self.head_pending else []
        if not self.bodiless:
            if self.chunked:
                if body:
                    out.append(b"%x\r\n" % len(body))
                    out.append(body)
                    out.append(b"\r\n")
                if not more:
                    out.append(b"0\r\n\r\n")
            elif body:
                if self.length_left >= 0:
                    self.length_left -= len(body)
                    if self.length_left < 0:
                        raise RuntimeError("Response content longer than Content-Length")
                out.append(body)
        if not more:
            if self.length_left > 0 and not self.bodiless:
                raise RuntimeError("Response content shorter than Content-Length")
            self.complete = True
            # reported before the last bytes leave: when it ends this instance's max_requests, the
            # front knows before the client can send its next request
            self.finish_report()
        if out:
            self.conn.write(out[0] if len(out) == 1 else b"".join(out))
        if not more:
            waiter = self.waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(None)
            self.conn.response_done(self)

    def error_answer(self, status: int, message: str, close: bool = False, code: Optional[str] = None,
                     with_id: bool = True, extra: Sequence[Tuple[bytes, bytes]] = ()) -> None:
        """An fnserve error answer (JSON, ``render_error``) instead of the app's response: ``code``
        (default by status), the request id in the body of a 5xx unless not ``with_id``, ``extra``
        headers after the error's."""
        headers, body = render_error(status, message, self.request_id if status >= 500 and with_id else None, code)
        headers.extend(extra)
        if close:
            self.keep_alive = False
        self.started = True
        self.held = None
        self.status = status
        self.headers = headers
        self.length_left = -1
        self.head_pending = True
        self.write_body(body, False)

    def uvicorn_500(self) -> None:
        """What uvicorn answers behind the front when the app ends without starting a response
        (or, on the frames path, fails to start one: ``UnwritableHeader``): a plain 500 and the
        connection closed."""
        self.keep_alive = False
        self.rid_line = b""  # uvicorn writes it itself: the front's observer never sees it
        body = ERROR_STRINGS["uvicorn_500"].encode()
        self.started = True
        self.held = None
        self.status = 500
        self.headers = [(b"content-type", b"text/plain; charset=utf-8"),
                        (b"content-length", b"%d" % len(body)), (b"connection", b"close")]
        self.length_left = -1
        self.head_pending = True
        self.write_body(body, False)

    def cut_off(self) -> None:
        """The stop's grace period is over before the response started: what the front answers
        then (``server.observe``: 503 ``SHUTTING_DOWN``, ``Retry-After: 1``), and close."""
        if not self.started and not self.gone and not self.complete:
            self.error_answer(503, ERROR_STRINGS["cut_off_503"], close=True, code="SHUTTING_DOWN",
                              with_id=False, extra=[(b"retry-after", b"1")])

    # -- timers
    def expire(self) -> None:
        """maxDuration is over: 504 (when nothing of the response was written) and close; the
        front is told (``EXPIRED``) and replaces this instance."""
        self.expires = 0.0
        server = self.conn.server
        plan = server.plan
        limit = plan.max_duration if plan is not None and plan.max_duration else 0.0
        if not self.on_wire and not self.gone:
            self.error_answer(504, ERROR_STRINGS["timeout_504"] % (plan.function if plan else "", "%g" % limit),
                              close=True)
        else:
            self._ended(False)
        self.gone = True
        server.expired(limit)
        self.task.cancel()

    def body_timed_out(self) -> None:
        """No body bytes for ``body_timeout``: the front's 408 (text) and close."""
        plan = self.conn.server.plan
        conn = self.conn
        if not self.on_wire and not self.gone:
            body = (ERROR_STRINGS["body_408"] % ("%g" % (plan.body_timeout if plan else 30.0))).encode("ascii")
            conn.write(b"".join([STATUS_LINES[408], b"content-type: text/plain; charset=utf-8\r\n",
                                 b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body]))
            self.status = 408
            self.complete = True
            self.finish_report()
            if conn.exchange is self:
                conn.exchange = None
            self.client_left()
            conn.close_after_write()
        else:
            self._ended(False)
