"""Forward one ASGI conversation (HTTP or WebSocket) from the front server to a function's worker.

Usage in the front app, once the route is matched::

    connection = await supervisor.acquire(function)       # FunctionLoadFailed → 500, ... (see below)
    await forward(connection, scope, receive, send)

Nothing is buffered: request body chunks go to the worker as ``receive()`` yields them, response
chunks go to ``send`` as the worker produces them (per-stream flow control: a client that reads
slowly holds back only its own function's ``send``); WebSocket messages flow both ways; a client
disconnect reaches the app as ``http.disconnect`` / ``websocket.disconnect`` (for an HTTP request
whose body is complete, within ``DISCONNECT_WATCH_DELAY`` + half of it: the watch starts late so
quick requests need no extra task). The first ``receive()`` happens before the worker sees the
request (its first body chunk travels with the scope), so ``Expect: 100-continue`` is answered at once.

Errors (all from ``fnserve.errors``; check ``.response_started`` before answering):

- ``WorkerCrashed`` — the worker died or its connection broke mid-request. Answer 502 if the
  response has not started; otherwise re-raise so the server aborts the client connection.
- ``FunctionFailed`` — the app raised (``.traceback``) or returned without a response. Answer 500
  if the response has not started.
- ``RequestRejected`` (431) — the scope does not fit in one IPC frame (``protocol.FrameTooLarge``:
  headers over ``MAX_FRAME``); the worker connection and its other streams are untouched.
Returns the response's status (HTTP: the status of ``http.response.start``, 0 when none was sent;
WebSocket: 101 once accepted, else 0) when the response is complete (HTTP: the last body chunk was
sent; WebSocket: the app returned) or when the client went away: callers that count failures
(``Leasing.serve``) need no ``send`` wrapper of their own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from fnserve.errors import FunctionFailed, RequestRejected, WorkerCrashed
from fnserve.runtime import protocol as p
from fnserve.runtime.asgitypes import Message, Receive, Scope, Send

__all__ = ["forward"]


class _ClientGone(Exception):
    """Internal: the client disconnected; the forward ends quietly."""


# A request whose body is complete gets a task watching for the client's disconnect only when its
# response takes longer than about this (seconds): fast requests need neither a task nor a timer.
DISCONNECT_WATCH_DELAY = 0.05


class _Watcher:
    """Starts the disconnect watch of slow requests on one connection: one timer callback every
    ``DISCONNECT_WATCH_DELAY / 2`` s while requests are pending (cheaper than a timer per request)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.pending: dict[int, tuple[float, Callable[[], None]]] = {}
        self.handle: asyncio.TimerHandle | None = None

    def add(self, key: int, start: Callable[[], None]) -> None:
        self.pending[key] = (self.loop.time() + DISCONNECT_WATCH_DELAY, start)
        if self.handle is None:
            self.handle = self.loop.call_later(DISCONNECT_WATCH_DELAY / 2, self._sweep)

    def _sweep(self) -> None:
        self.handle = None
        now = self.loop.time()
        for key in [key for key, (deadline, _) in self.pending.items() if deadline <= now]:
            self.pending.pop(key)[1]()
        if self.pending:
            self.handle = self.loop.call_later(DISCONNECT_WATCH_DELAY / 2, self._sweep)


def forward(connection: p.Connection, scope: Scope, receive: Receive, send: Send) -> Awaitable[int]:
    """Run one ASGI conversation (``scope["type"]`` ``"http"`` or ``"websocket"``) on a new stream
    of ``connection`` (from ``Supervisor.acquire``); the awaitable returns the response status
    (module docstring). Raises ``WorkerCrashed`` / ``FunctionFailed`` as described in the module
    docstring. (A plain function returning the coroutine: one coroutine frame less per request.)"""
    if scope["type"] == "http":
        return _forward_http(connection, scope, receive, send)
    return _forward_ws(connection, scope, receive, send)


async def _forward_http(connection: p.Connection, scope: Scope, receive: Receive, send: Send) -> int:
    name = connection.name or "the function"
    message = await receive()  # the first body chunk travels in the SCOPE frame
    if message["type"] != "http.request":
        return 0  # the client left before anything happened
    more = message.get("more_body", False)
    body = message.get("body", b"")
    try:
        if len(body) <= p.CHUNK:
            stream = connection.open_stream(_as_dict(scope), body, more)
        else:
            stream = connection.open_stream(_as_dict(scope))
            if not await stream.send_data(p.HTTP_REQUEST, body, more):
                raise p.ConnectionLost()
    except p.ConnectionLost:
        raise WorkerCrashed(name) from None
    except p.FrameTooLarge as exc:
        raise _too_large(exc) from None
    loop = connection.loop  # not asyncio.get_running_loop(): a getpid() system call each on Python < 3.12
    pump: list[asyncio.Task[None]] = []

    def watch() -> None:
        pump.append(loop.create_task(_pump_http(stream, receive)))

    watcher = None
    if more:
        watch()
    else:
        watcher = connection.extras.get("upstream.watcher")
        if watcher is None:
            watcher = connection.extras["upstream.watcher"] = _Watcher(loop)
        watcher.add(stream.id, watch)
    ended = False
    status = 0
    try:
        while True:
            try:
                ftype, flags, meta, data = await stream.get()
            except p.ConnectionLost as exc:
                raise WorkerCrashed(name, response_started=status > 0) from exc
            except _ClientGone:
                return status
            if ftype == p.RESPONSE_BODY:
                more = bool(flags & p.MORE)
                if not more:
                    ended = True  # the worker side knows the response is complete
                await send({"type": "http.response.body", "body": data, "more_body": more})
                if not more:
                    return status
            elif ftype == p.RESPONSE_START:
                if flags & p.RAW_HEADERS:
                    status = int(meta)
                    await send({"type": "http.response.start", "status": status, "headers": p.unpack_headers(data)})
                else:
                    start = p.decode_message(flags, meta, data)
                    status = int(start.get("status") or 0)
                    await send(start)
            elif ftype == p.MESSAGE:
                await send(p.decode_message(flags, meta, data))
            else:
                ended = True
                _raise_end(name, ftype, meta, status > 0)
                return status
    finally:
        if watcher is not None:
            watcher.pending.pop(stream.id, None)
        if pump:
            pump[0].cancel()
        if not ended and not connection.closed and not stream.closed:
            stream.send(p.DISCONNECT)  # client gone or forward aborted: the app sees http.disconnect
        stream.close()


async def _forward_ws(connection: p.Connection, scope: Scope, receive: Receive, send: Send) -> int:
    name = connection.name or "the function"
    try:
        stream = connection.open_stream(_as_dict(scope))
    except p.ConnectionLost:
        raise WorkerCrashed(name) from None
    except p.FrameTooLarge as exc:
        raise _too_large(exc) from None
    pump = connection.loop.create_task(_pump_ws(stream, receive))
    ended = False
    started = False
    try:
        while True:
            try:
                ftype, flags, meta, data = await stream.get()
            except p.ConnectionLost as exc:
                raise WorkerCrashed(name, response_started=started) from exc
            except _ClientGone:
                return 101 if started else 0
            if ftype == p.MESSAGE:
                message = p.decode_message(flags, meta, data)
                if message["type"] in ("websocket.accept", "websocket.http.response.start"):
                    started = True
                await send(message)
            else:
                ended = True
                if ftype == p.ERROR:
                    _raise_end(name, ftype, meta, started)
                return 101 if started else 0
    finally:
        pump.cancel()
        if not ended and not connection.closed and not stream.closed:
            stream.send(p.DISCONNECT)  # the app receives websocket.disconnect (1006)
        stream.close()


def _too_large(exc: p.FrameTooLarge) -> RequestRejected:
    return RequestRejected(431, f"the request's headers are too large to forward ({exc.size} bytes)",
                           "send smaller headers (cookies, tokens)")


def _raise_end(name: str, ftype: int, meta: bytes, started: bool) -> None:
    """The worker ended an HTTP stream before the last body chunk: END or ERROR."""
    if ftype == p.ERROR:
        info = p.loads(meta)
        if info.get("retry"):
            raise WorkerCrashed(name)
        raise FunctionFailed(
            name, info.get("message", "an exception"), info.get("traceback", ""),
            response_started=bool(info.get("response_started", started)),
        )
    if not started:
        raise FunctionFailed(name, "nothing: the app returned without starting a response", response_started=False)


async def _pump_http(stream: p.Stream, receive: Receive) -> None:
    """Client → worker for HTTP: the remaining body chunks as they arrive, then wait for a
    disconnect (uvicorn's ``receive`` blocks until the client leaves or the response is done)."""
    conn = stream.conn
    try:
        while True:
            message = await receive()
            mtype = message["type"]
            if mtype == "http.request":
                body, more = message.get("body", b""), message.get("more_body", False)
                if not stream.send_now(p.HTTP_REQUEST, body, more):
                    if not await stream.send_data(p.HTTP_REQUEST, body, more):
                        return
                await conn.drain()
            elif mtype == "http.disconnect":
                stream.send(p.DISCONNECT)
                stream.fail(_ClientGone())
                return
    except p.ConnectionLost:
        return
    except Exception:  # the server's receive failed: treat as a disconnect
        stream.fail(_ClientGone())


async def _pump_ws(stream: p.Stream, receive: Receive) -> None:
    """Client → worker for WebSocket: every message (connect, receive, disconnect) as it comes."""
    conn = stream.conn
    try:
        while True:
            message = await receive()
            flags, meta, data = p.encode_message(_as_dict(message))
            if data:
                if stream.send_window <= 0 and not await stream.wait_window():
                    return
                stream.send_window -= len(data)
            stream.send(p.MESSAGE, flags, meta, data)
            if message["type"] == "websocket.disconnect":
                stream.fail(_ClientGone())
                return
            await conn.drain()
    except p.ConnectionLost:
        return
    except Exception:  # the server's receive failed: treat as a disconnect
        stream.fail(_ClientGone())


def _as_dict(mapping: Scope | Message) -> dict[str, Any]:
    """The scope or message itself when it is a ``dict`` (always, from uvicorn and ``FrontApp``),
    else a copy: the wire encoder (``runtime.frames``) takes dicts only."""
    return mapping if isinstance(mapping, dict) else dict(mapping)
