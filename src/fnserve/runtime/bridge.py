"""Bridges between a request's worker thread (sync user code) and the event loop (ASGI 3.0).

- ``BodyReader``: a blocking, file-like request body for the thread (``wsgi.input``, a handler's
  ``rfile``). Each read that needs more data pulls the next ``http.request`` message by running
  ``receive()`` on the loop (``run_coroutine_threadsafe``); bytes beyond ``limit`` raise
  ``BodyTooLarge``; a client that went away raises ``ClientDisconnected``.
- ``Outbox``: messages the thread produces, handed to the loop thread-safely as they are produced
  (never buffered until the end: streaming), with bounded back-pressure (``high_water`` bytes in
  flight; the thread blocks above it). ``pump()`` runs on the loop, sends them with the ASGI
  ``send`` and ends when the thread says ``done``; it watches for ``http.disconnect`` while a
  response streams, so the thread's next write raises ``ClientDisconnected``.
"""

import asyncio
import collections
import json
import sys
import threading
import traceback
from typing import Any, Callable, Coroutine, Deque, List, Optional, Sequence, Tuple, cast

from .asgitypes import Message, Receive, Scope, Send
from .failures import BodyTooLarge


class ClientDisconnected(BrokenPipeError):
    """The client went away (``http.disconnect``, or sending failed). A ``BrokenPipeError`` so user
    code that handles a real socket's broken pipe handles this one too."""


class BodyReader:
    """Blocking request-body stream for a worker thread. ``first``: the first ``http.request``
    message, already received on the loop; ``limit``: max body bytes (0 = unlimited)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, receive: Receive, first: Message, limit: int) -> None:
        self._loop = loop
        self._receive = receive
        self._buffer = bytearray()
        self._limit = limit
        self.received = 0
        self.complete = False
        self.disconnected = False
        self._take(first)

    def _take(self, message: Message) -> None:
        if message.get("type") == "http.disconnect":
            self.complete = self.disconnected = True
            return
        body = message.get("body", b"")
        self.received += len(body)
        if self._limit and self.received > self._limit:
            self.complete = True
            raise BodyTooLarge(self._limit, self.received)
        self._buffer += body
        if not message.get("more_body", False):
            self.complete = True

    def _fill(self, want: int) -> None:
        """Pull messages until ``want`` bytes are buffered (-1: all) or the body ends."""
        while not self.complete and (want < 0 or len(self._buffer) < want):
            # ASGI's receive is an async function: calling it gives a coroutine (the spec's type
            # says only Awaitable, which run_coroutine_threadsafe does not accept)
            pending = cast("Coroutine[Any, Any, Message]", self._receive())
            message = asyncio.run_coroutine_threadsafe(pending, self._loop).result()
            self._take(message)
        if self.disconnected and not self._buffer:
            raise ClientDisconnected("the client disconnected while the request body was being read")

    def read(self, size: Optional[int] = -1) -> bytes:
        size = -1 if size is None else size
        self._fill(size)
        if size < 0 or size >= len(self._buffer):
            data = bytes(self._buffer)
            self._buffer.clear()
        else:
            data = bytes(self._buffer[:size])
            del self._buffer[:size]
        return data

    def read1(self, size: int = -1) -> bytes:
        if not self._buffer:
            self._fill(1)
        return self.read(size if 0 <= size <= len(self._buffer) else len(self._buffer))

    def readline(self, size: Optional[int] = -1) -> bytes:
        size = -1 if size is None else size
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0 and (size < 0 or end < size):
                return self.read(end + 1)
            if size >= 0 and len(self._buffer) >= size:
                return self.read(size)
            if self.complete:
                return self.read(size)
            self._fill(len(self._buffer) + 1)

    def readlines(self, hint: int = -1) -> List[bytes]:
        lines: List[bytes] = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                return lines

    def __iter__(self) -> "BodyReader":
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def readable(self) -> bool:
        return True

    def close(self) -> None:
        pass


_DONE: Sequence[Message] = []  # the end-of-thread marker in Outbox's queue, compared by identity


class Outbox:
    """Thread → loop message channel with back-pressure (``high_water`` bytes, default 1 MiB).

    Thread side: ``put(messages)`` (a list, sent in order), then ``done(error)`` exactly once.
    Every ``put`` is delivered at once (streaming), but wake-ups of the loop are coalesced: one
    ``call_soon_threadsafe`` per batch the loop has not picked up yet, so a quick response and its
    ``done`` usually cost a single wake-up. Loop side: ``await pump(send, ...)``. Created on the
    loop thread.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, high_water: int = 1 << 20) -> None:
        self._loop = loop
        self._items: Deque[Sequence[Message]] = collections.deque()
        self._lock = threading.Lock()
        self._cond: Optional[threading.Condition] = None  # created on first back-pressure
        self._scheduled = False
        self._ended = False
        self._waiter: Optional[asyncio.Future[None]] = None
        self._pending = 0
        self._high_water = high_water
        self.closed = False
        self.error: Optional[BaseException] = None

    # -- thread side
    def _push(self, item: Sequence[Message], size: int) -> None:
        with self._lock:
            if self.closed and item is not _DONE:
                raise ClientDisconnected("the client disconnected")
            if self._ended:  # the response is complete and pump() has returned: nobody listens
                return
            self._items.append(item)
            self._pending += size
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop is closed (the process is stopping)
            pass

    def settle(self, exc: BaseException, sent: bool, finished: bool, label: str, what: str) -> Optional[BaseException]:
        """From the thread, when the function (``what``: "the handler", "the WSGI application")
        raised ``exc``: a gone client is nothing to report; otherwise the traceback goes to the
        function's log (stderr, prefixed with ``label``) and, before anything was sent, the client
        gets 413 (body over the limit) or 500. Returns the error that must cut a started but
        unfinished response short (the server then aborts the connection), else None."""
        if isinstance(exc, ClientDisconnected):
            return None
        too_large = isinstance(exc, BodyTooLarge)
        if not too_large:
            sys.stderr.write("fnserve: %s: %s raised:\n%s" % (label, what, traceback.format_exc()))
        if not sent:
            if too_large:
                self.fail(413, "body_too_large", str(exc))
            else:
                self.fail(500, "function_error", "the function raised %s: %s" % (type(exc).__name__, exc))
            return None
        return None if finished else exc

    def fail(self, status: int, code: str, message: str) -> None:
        """From the thread: answer ``status`` with fnserve's JSON error body (SPEC §3.5), unless the
        client has gone."""
        try:
            self.put(error_messages(status, code, message))
        except ClientDisconnected:
            pass

    def put(self, messages: Sequence[Message]) -> None:
        """Queue ``messages`` for sending; blocks while more than ``high_water`` bytes are in
        flight; raises ``ClientDisconnected`` once the client is gone."""
        size = 0
        for m in messages:
            size += len(m.get("body", b""))
        self._push(messages, size)
        if self._pending > self._high_water:
            with self._lock:
                if self._cond is None:
                    self._cond = threading.Condition(self._lock)
                while self._pending > self._high_water and not self.closed:
                    self._cond.wait(1.0)

    def done(self, error: Optional[BaseException] = None) -> None:
        """The thread is finished; ``error`` (if any) is raised by ``pump`` after sending."""
        self.error = error
        self._push(_DONE, 0)

    # -- loop side
    def _wake(self) -> None:
        with self._lock:
            self._scheduled = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _sent(self, size: int) -> None:
        with self._lock:
            self._pending -= size
            if self._cond is not None:
                self._cond.notify_all()

    def _close(self) -> None:
        with self._lock:
            self.closed = True
            if self._cond is not None:
                self._cond.notify_all()

    async def pump(self, send: Send, receive: Optional[Receive] = None, reader: Optional[BodyReader] = None, head: bool = False) -> None:
        """Send queued messages until the response's last body message is sent, or until
        ``done``; in the latter case raise the thread's error, if any (a response cut short).

        ``receive``/``reader``: when given, a streaming response (a body message with
        ``more_body``) starts a watcher for ``http.disconnect`` once the request body is complete.
        ``head``: drop response body bytes (a HEAD request).
        """
        watcher: Optional[asyncio.Task[None]] = None
        items = self._items
        finished = complete = False
        try:
            while not finished:
                with self._lock:
                    batch = list(items)
                    items.clear()
                if not batch:
                    self._waiter = self._loop.create_future()
                    with self._lock:
                        ready = bool(items)
                    if not ready:
                        await self._waiter
                    self._waiter = None
                    continue
                for item in batch:
                    if item is _DONE or finished:
                        finished = True
                        break
                    size = 0
                    for message in item:
                        size += len(message.get("body", b""))
                        if self.closed:
                            continue
                        if head and message.get("body"):
                            message = {"type": message["type"], "body": b"", "more_body": message.get("more_body", False)}
                        try:
                            await send(message)
                        except Exception:  # the connection is gone: stop the thread's writes
                            self._close()
                            continue
                        if message["type"] == "http.response.body" and not message.get("more_body"):
                            # The response is complete: the thread may still be finishing (a
                            # WSGI close(), the rest of a handler); it reports its own errors.
                            finished = complete = True
                        elif (
                            watcher is None and receive is not None and message.get("more_body")
                            and (reader is None or reader.complete)
                        ):
                            watcher = self._loop.create_task(self._watch(receive))
                    if size:
                        self._sent(size)
        finally:
            if watcher is not None and not watcher.done():
                watcher.cancel()
            if not finished:  # cancelled: a thread blocked on back-pressure must not wait forever
                self._close()
            with self._lock:
                self._ended = True
        if self.error is not None and not complete:
            raise self.error

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message.get("type") == "http.disconnect":
                self._close()
                return


def error_messages(status: int, code: str, message: str, headers: Tuple[Tuple[bytes, bytes], ...] = ()) -> List[Message]:
    """The ASGI messages of an fnserve error response (SPEC §3.5): JSON
    ``{"error": {"code", "message"}}`` with ``status``, plus ``headers`` (e.g. ``Allow``)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")
    return [
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
            + list(headers),
        },
        {"type": "http.response.body", "body": body, "more_body": False},
    ]


async def send_error(send: Send, status: int, code: str, message: str, headers: Tuple[Tuple[bytes, bytes], ...] = ()) -> None:
    """Send ``error_messages(...)`` from the loop."""
    for m in error_messages(status, code, message, headers):
        await send(m)


def declared_length(scope: Scope) -> Optional[int]:
    """The request's ``Content-Length`` as an int, or None (absent or invalid)."""
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def refuse_non_http(scope: Scope, receive: Receive, send: Send) -> bool:
    """For the sync kinds (handler, WSGI, lambda), which speak HTTP only: a WebSocket is refused
    (close code 1008), any other non-HTTP scope ignored. True when the scope was dealt with here."""
    if scope["type"] == "http":
        return False
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.close", "code": 1008})
    return True


async def refuse_declared_oversize(scope: Scope, send: Send, limit: int) -> bool:
    """Answer 413 before the function runs when ``Content-Length`` is over ``limit`` bytes
    (0 = unlimited). True when refused."""
    length = declared_length(scope)
    if limit and length is not None and length > limit:
        await send_error(send, 413, "body_too_large",
                         "request body of %d bytes is over the limit of %d bytes" % (length, limit))
        return True
    return False


async def run_threaded(executor: Any, inflight: Any, limit: int, receive: Receive, send: Send,
                       work: Callable[[BodyReader, "Outbox"], None], head: bool) -> None:
    """Run ``work(reader, outbox)`` on a pool thread and stream what it produces to ``send``
    (``Outbox.pump``). ``inflight`` is entered here; the thread exits it when it is done (it may
    outlive the response: a WSGI ``close()``), or this coroutine does when ``work`` never started.
    A body over ``limit`` bytes while reading the first message → 413."""
    inflight.enter()
    submitted = False
    try:
        loop = asyncio.get_running_loop()
        try:
            reader = BodyReader(loop, receive, await receive(), limit)
        except BodyTooLarge as exc:
            await send_error(send, 413, "body_too_large", str(exc))
            return
        outbox = Outbox(loop)
        executor.submit(work, reader, outbox)
        submitted = True
        await outbox.pump(send, receive, reader, head=head)
    finally:
        if not submitted:
            inflight.exit()
