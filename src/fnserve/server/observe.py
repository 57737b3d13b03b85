"""Per-request observability of ``fnserve start``: request ids, instance and cold/warm, access log
and metrics (issue 6 item 5). Three pieces, wired by ``fnserve.server.start``:

- ``Observed``: ASGI middleware in front of ``FrontApp``. Answers ``/_fnserve/*`` with the
  ``AdminApp`` when it is mounted on this port; gives every other request a ``RequestInfo`` in
  the ``CURRENT`` context variable (not in the scope: the scope goes to the worker as JSON, and a
  non-JSON value there sends the encoder down its slow path, ~28 µs per request). The request id is the
  client's ``X-Request-Id`` when valid (1-128 of ``A-Z a-z 0-9 . _ : + / = -``), else 16 random
  hex digits; the function sees it as ``x-request-id`` and the client gets it back as
  ``x-fnserve-request-id`` (a name no app uses, so it never doubles an app's own header).
- ``ObservedSupervisor``: wraps the ``Supervisor`` given to ``SupervisorDispatcher``; its
  ``serve`` counts waiting requests per function (queue depth) and fills the request's
  ``instance`` (worker pid) and ``cold`` from the supervisor's lease (``on_lease``): cold is the
  first request of a freshly started instance. Everything else is delegated.
- ``AccessLog``: the ``FrontApp(access_log=...)`` hook of ``start``: one ``fnserve.access`` record
  and one ``Metrics.record_request`` per request. ``/_fnserve/*`` requests are neither logged nor
  counted. ``log_access`` is the same record without metrics: ``FrontApp``'s default hook, the one
  of ``dev`` (which runs behind ``Observed`` too, for the request ids).

Context variables are per task (uvicorn runs each request in its own task), so ``CURRENT`` never
leaks between requests; it is how ``on_lease`` finds the request without changing any signature.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import time
from contextvars import ContextVar
from typing import Any

from fnserve.errors import FunctionFailed
from fnserve.runtime.asgitypes import ASGIApp, Message, Receive, Scope, Send
from fnserve.server.admin import PREFIX, AdminApp
from fnserve.server.dashboard.feed import DashboardFeed
from fnserve.server.errorpages import render
from fnserve.server.logs import ACCESS, access_record
from fnserve.server.metrics import Metrics

__all__ = ["AccessLog", "CURRENT", "Observed", "ObservedSupervisor", "RequestInfo", "REQUEST_ID_HEADER",
           "ResponseObserver", "log_access", "note_lease", "override_headers"]

REQUEST_ID_HEADER = b"x-fnserve-request-id"
_VALID_ID = re.compile(rb"[A-Za-z0-9._:+/=-]{1,128}")
CUT_OFF_MESSAGE = "the server stopped before this request finished (its grace period was over); retry it"
_CUT_OFF_HEADERS, _CUT_OFF = render(503, CUT_OFF_MESSAGE, code="SHUTTING_DOWN")


class RequestInfo:
    """What is known about one request beyond the ASGI scope. ``id``: str; ``instance``: pid of
    the worker that served it or None; ``cold``: bool, None when no function was involved;
    ``status``: the response status once it started (0 before; set by ``ResponseObserver``);
    ``public_errors``: runtime error answers lose the exception's text (``runtime_error``)."""

    __slots__ = ("id", "instance", "cold", "status", "public_errors", "_header")

    def __init__(self, request_id: str, *, public_errors: bool = False) -> None:
        self.id = request_id
        self.instance: int | None = None
        self.cold: bool | None = None
        self.status = 0
        self.public_errors = public_errors
        self._header: tuple[bytes, bytes] | None = None

    @property
    def header(self) -> tuple[bytes, bytes]:
        """The ``x-fnserve-request-id`` response header of this request."""
        if self._header is None:
            self._header = (REQUEST_ID_HEADER, self.id.encode("ascii"))
        return self._header


CURRENT: ContextVar[RequestInfo | None] = ContextVar("fnserve_request", default=None)


# error codes the function runtime (``fnserve.runtime.bridge.error_messages``: answers made inside the
# worker, e.g. a handler class that raised) uses → the one vocabulary of ``errorpages.CODES``
RUNTIME_CODES = {"function_error": "FUNCTION_INVOCATION_FAILED", "body_too_large": "FUNCTION_PAYLOAD_TOO_LARGE",
                 "method_not_allowed": "METHOD_NOT_ALLOWED"}
_RUNTIME_STATUSES = (405, 413, 500)
_HELD_LIMIT = 65536  # bytes: larger bodies are never a runtime error answer


def runtime_error(status: int, headers: Any, body: bytes, request_id: str, public: bool) -> tuple[list[Any], bytes] | None:
    """If ``body`` is an error answer made by the function runtime (``{"error": {"code":
    "function_error", "message"}}``), the same answer in fnserve's vocabulary (``errorpages``):
    the Vercel code, ``request_id``, and — when ``public`` (``fnserve start``) and it is a 500 —
    a message without the exception's text (that is in the function's log). Else None."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) and len(data) == 1 else None
    code = RUNTIME_CODES.get(error.get("code")) if isinstance(error, dict) else None  # type: ignore[arg-type]
    if error is None or code is None:
        return None
    message = str(error.get("message", ""))
    if public and status >= 500:
        message = FunctionFailed.PUBLIC_MESSAGE
    extra, new_body = render(status, message, code=code, request_id=request_id if status >= 500 else None)
    kept = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-length")]
    return kept + extra, new_body


class ResponseObserver:
    """The one ``send`` wrapper of a request (issue 14: one observer instead of a stack of them):
    keeps the response ``status`` (0 until a response starts; WebSocket: 101 accepted, 403 refused)
    and the access log's ``label``, overrides headers with ``extra`` (vercel.json ``headers``
    rules), and — when ``info`` is given (``Observed`` in front) — adds the request id header
    (``x-fnserve-request-id``) and rewrites error answers made by the function runtime
    (``runtime_error``; held until their body is complete, at most ``_HELD_LIMIT`` bytes).
    ``FrontApp`` makes one per request; ``Observed`` makes one only for an app that does not
    (``observes_responses`` false). Call it as the ASGI ``send``."""

    __slots__ = ("send", "info", "extra", "status", "label", "_held", "_chunks")

    def __init__(self, send: Send, info: RequestInfo | None, extra: list[tuple[bytes, bytes]] | None = None) -> None:
        self.send = send
        self.info = info
        self.extra = extra
        self.status = 0
        self.label = "-"
        self._held: Message | None = None  # a response start that may be a runtime error answer
        self._chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        mtype = message["type"]
        if mtype == "http.response.start":
            status = self.status = message["status"]
            headers = message.get("headers")
            if self.extra:
                message = {**message, "headers": override_headers(headers or (), self.extra)}
                headers = message["headers"]
            info = self.info
            if info is not None:
                info.status = status
                if status in _RUNTIME_STATUSES and _small_json(headers):
                    self._held = message
                    return
                if type(headers) is list:
                    headers.append(info.header)
                else:
                    message = {**message, "headers": [*(headers or ()), info.header]}
        elif self._held is not None:
            chunks = self._chunks
            chunks.append(message.get("body", b""))
            if message.get("more_body", False) and sum(map(len, chunks)) <= _HELD_LIMIT:
                return
            start, self._held = self._held, None
            info = self.info
            assert info is not None
            body = b"".join(chunks)
            answer = None if message.get("more_body", False) else \
                runtime_error(start["status"], start.get("headers") or (), body, info.id, info.public_errors)
            if answer is not None:
                headers, body = answer
            else:
                headers = list(start.get("headers") or ())
            await self.send({**start, "headers": [*headers, info.header]})
            message = {**message, "body": body}
        elif mtype == "websocket.accept":
            self.status = 101
        elif mtype == "websocket.close" and not self.status:
            self.status = 403
        await self.send(message)


def override_headers(headers: Any, extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """``headers`` without those named in ``extra``, then ``extra`` (a rule's value wins)."""
    names = {k for k, _ in extra}
    return [(k, v) for k, v in headers if k.lower() not in names] + extra


class Observed:
    """ASGI middleware: request ids and the ``/_fnserve/`` endpoints. ``admin``: the
    ``AdminApp`` to answer ``/_fnserve/*`` with on this port, or None (then those paths go to
    the project like any other). ``admin`` may be changed at any time (a reload that adds a
    user route under ``/_fnserve/`` unmounts it). ``public_errors``: True for ``fnserve start``
    (error answers made inside the worker lose the exception's text, see ``runtime_error``).
    An ``app`` with a true ``observes_responses`` attribute (``FrontApp``) wraps its own ``send``
    in a ``ResponseObserver`` reading ``CURRENT``; any other app gets one from here."""

    def __init__(self, app: ASGIApp, admin: AdminApp | None, *, public_errors: bool = False) -> None:
        self.app = app
        self.admin = admin
        self.public_errors = public_errors
        self.draining = False  # set by the server when it stops: a cancelled request then gets a 503
        self._observes = bool(getattr(app, "observes_responses", False))

    admin: ASGIApp | None  # an AdminApp, or the dashboard (server.dashboard.web.DashboardApp) in front of one

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        admin = self.admin
        if admin is not None and scope["path"].startswith(PREFIX):
            await admin(scope, receive, send)
            return
        request_id = None
        headers = scope["headers"]
        for key, value in headers:
            if key == b"x-request-id":
                if _VALID_ID.fullmatch(value):
                    request_id = value
                break
        if request_id is None:
            request_id = b"%016x" % _ids.getrandbits(64)
            scope["headers"] = [(k, v) for k, v in headers if k != b"x-request-id"]
            scope["headers"].append((b"x-request-id", request_id))
        info = RequestInfo(request_id.decode("ascii"), public_errors=self.public_errors)
        CURRENT.set(info)  # never in the scope: the scope is JSON-encoded for the worker
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send if self._observes else ResponseObserver(send, info))
        except asyncio.CancelledError:
            if not self.draining or info.status:
                raise
            # uvicorn cancels what is left when the grace period is over: say so (503, retry)
            # rather than uvicorn's generic 500; the access log already shows status 0 (cut off)
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):
                task.uncancel()
            await send({"type": "http.response.start", "status": 503, "headers": [
                *_CUT_OFF_HEADERS, (b"retry-after", b"1"), (b"connection", b"close"), info.header]})
            await send({"type": "http.response.body", "body": _CUT_OFF})


# request ids: 64 random bits from a generator seeded once from the OS, not os.urandom per request
# (a getrandom() system call each); ids are labels for logs, not secrets
_ids = random.Random(os.urandom(32))


class ObservedSupervisor:
    """A ``Supervisor`` whose request path feeds ``Metrics.waiting`` (queue depth) and the current
    ``RequestInfo``: ``serve(function, scope, receive, send, forward)`` passes ``on_lease`` to the
    supervisor, which reports each lease (``lease.instance.pid``, ``lease.cold``: the first request
    of a freshly started instance) before the request is forwarded. Every other attribute is the
    supervisor's."""

    def __init__(self, supervisor: Any, metrics: Metrics) -> None:
        self.supervisor = supervisor
        self.metrics = metrics

    def __getattr__(self, name: str) -> Any:
        return getattr(self.supervisor, name)

    async def serve(self, function: Any, scope: Any, receive: Any, send: Any, forward: Any) -> None:
        fid = function if isinstance(function, str) else function.id
        waiting = self.metrics.waiting
        waiting[fid] = waiting.get(fid, 0) + 1
        queued = [True]

        def on_lease(lease: Any) -> None:
            if queued[0]:
                queued[0] = False
                waiting[fid] -= 1
            if lease.cold:  # a new instance: its cold start counted now (O(1); gauges are read at scrape time)
                inst = lease.instance
                self.metrics.note_cold_start(fid, inst.pid, inst.ready_ms)
            info = CURRENT.get()
            if info is not None:
                info.instance = lease.instance.pid
                info.cold = lease.cold

        try:
            await self.supervisor.serve(function, scope, receive, send, forward, on_lease=on_lease)
        finally:
            if queued[0]:
                waiting[fid] -= 1


class AccessLog:
    """The ``FrontApp`` ``access_log`` hook of ``start`` (and of ``dev`` while a dashboard page is
    open): ``metrics`` (start) counted always, a log record (as ``log_access``) when
    ``fnserve.access`` is enabled for INFO, and the request given to the dashboard's ``feed`` only
    while a dashboard page is open (``DashboardFeed.listening``: one attribute test otherwise)."""

    def __init__(self, metrics: Metrics | None = None, feed: DashboardFeed | None = None) -> None:
        self.metrics = metrics
        self.feed = feed

    def __call__(self, scope: Scope, status: int, started: float, label: str) -> None:
        seconds = time.perf_counter() - started
        if self.metrics is not None:
            self.metrics.record_request(label, status, seconds)
        feed = self.feed
        if feed is not None and feed.listening:
            info = CURRENT.get()
            if info is None:
                feed.request(scope, status, seconds, label, None, None, None)
            else:
                feed.request(scope, status, seconds, label, info.id, info.instance, info.cold)
        if ACCESS.isEnabledFor(20):  # logging.INFO
            _emit(scope, status, seconds * 1000.0, label)


def note_lease(lease: Any) -> None:
    """The ``on_lease`` of ``fnserve dev``'s dispatcher (``SupervisorDispatcher(on_lease=)``): the
    instance's pid and cold/warm into the current ``RequestInfo``, for the access line and the
    dashboard (``ObservedSupervisor`` does it in ``start``)."""
    info = CURRENT.get()
    if info is not None:
        info.instance = lease.instance.pid
        info.cold = lease.cold


def _small_json(headers: Any) -> bool:
    """True for JSON response headers with a ``Content-Length`` up to ``_HELD_LIMIT``."""
    json_type = small = False
    for name, value in headers or ():
        if name == b"content-type":
            json_type = value == b"application/json"
        elif name == b"content-length":
            small = value.isdigit() and int(value) <= _HELD_LIMIT
    return json_type and small


def log_access(scope: Scope, status: int, started: float, label: str) -> None:
    """``FrontApp``'s default ``access_log`` hook: one ``fnserve.access`` record
    (``logs.access_record``) when that logger is enabled for INFO. ``status``: the response's (0:
    none sent); ``started``: ``time.perf_counter()`` at arrival; ``label``: function id, ``static``,
    ``redirect``... The request id, instance and cold come from ``CURRENT`` ("-"/None without
    ``Observed`` in front)."""
    if not ACCESS.isEnabledFor(20):  # logging.INFO
        return
    duration_ms = (time.perf_counter() - started) * 1000.0
    info = CURRENT.get()  # _emit inlined: this is dev's per-request path
    query = scope.get("query_string")
    path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
    if info is None:
        record = access_record("-", scope.get("method", "WS"), path, status, duration_ms, label, None, None)
    else:
        record = access_record(info.id, scope.get("method", "WS"), path, status, duration_ms, label, info.instance, info.cold)
    ACCESS.handle(record)


def _emit(scope: Scope, status: int, duration_ms: float, label: str) -> None:
    info = CURRENT.get()
    query = scope.get("query_string")
    path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
    if info is None:
        record = access_record("-", scope.get("method", "WS"), path, status, duration_ms, label, None, None)
    else:
        record = access_record(info.id, scope.get("method", "WS"), path, status, duration_ms, label, info.instance, info.cold)
    ACCESS.handle(record)
