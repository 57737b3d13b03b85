"""The front ↔ worker connection: ASGI conversations multiplexed over one Unix socket.

Runs on both sides (the front server and the function's worker, Python 3.9–3.13): stdlib only.
The frame format and the codec are in ``frames`` (re-exported here: ``protocol.SCOPE``,
``protocol.encode_message``, ...); this module has the ``Connection`` (an ``asyncio.Protocol``)
and its ``Stream``s.

Writes are coalesced: frames queued by a task leave in one write when it is about to wait for the
peer (``Stream.get``) or finishes its stream, else at the end of the event-loop step. Frames of
different requests are NOT held back to batch them: that would make the two processes take turns
instead of working in parallel (whole-step batching measured slower in bench/ipc.py: the
worker saw ~15 requests per read and answered them as one burst, so front and worker alternated).
Flow control is per stream, as in HTTP/2: a sender may have at most ``WINDOW_SIZE`` data bytes
(bodies, WebSocket payloads) not yet consumed by the receiving app or client; the receiver returns
credit with ``WINDOW`` frames as its consumer takes data. A slow client or an app that does not read
its body therefore stalls only its own stream, never the other requests on the socket. As a safety
net against a misbehaving peer, reading pauses while more than ``HIGH_WATER`` bytes sit queued.
"""

import asyncio
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional

from .frames import *  # noqa: F403 - the frame constants and codec are part of this module's API
from .frames import (
    CHUNK,
    DATA_BODY,
    DISCONNECT,
    FLUSH_NOW,
    HEADER,
    HEADER_SIZE,
    HIGH_WATER,
    HTTP_REQUEST,
    LOW_WATER,
    MAX_FRAME,
    MORE,
    RAW_HEADERS,
    SCOPE,
    WINDOW,
    WINDOW_SIZE,
    WINDOW_UPDATE,
    ConnectionLost,
    Frame,
    FrameTooLarge,
    ProtocolError,
    _dumps,
    _loads,
    decode_scope,
    scope_frame,
    unpack_headers,
)

# --------------------------------------------------------------------------------- streams


class Stream:
    """One ASGI conversation on a ``Connection``: an inbound frame queue plus send helpers.

    ``get()`` returns the next inbound ``(type, flags, meta, data)`` frame, or raises the error the
    stream was failed with (``ConnectionLost`` when the connection broke). Taking a data frame
    returns flow-control credit to the peer. ``send_window``: data bytes this side may still send;
    ``await wait_window()`` before sending data (``send_data`` does). ``reset``: the peer said the
    other end is gone (``DISCONNECT``): sends are pointless from then on.
    """

    __slots__ = ("id", "conn", "_frames", "_waiter", "_error", "closed", "send_window", "_window_waiter",
                 "_unacked", "reset")

    def __init__(self, stream_id: int, conn: "Connection") -> None:
        self.id = stream_id
        self.conn = conn
        self._frames: Deque[Frame] = deque()
        self._waiter: Optional[asyncio.Future[None]] = None
        self._error: Optional[BaseException] = None
        self.closed = False
        self.send_window = WINDOW_SIZE
        self._window_waiter: Optional[asyncio.Future[None]] = None
        self._unacked = 0
        self.reset = False

    def _feed(self, frame: Frame) -> None:
        self._frames.append(frame)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _credit(self, n: int) -> None:
        self.send_window += n
        waiter = self._window_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _reset(self) -> None:
        self.reset = True
        self._credit(0)

    def fail(self, exc: BaseException) -> None:
        """Make the pending and every later ``get()`` raise ``exc`` once queued frames are consumed."""
        if self._error is None:
            self._error = exc
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)
        waiter = self._window_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self) -> Frame:
        while not self._frames:
            if self._error is not None:
                raise self._error
            if self.conn._out:
                self.conn.flush()  # about to wait for the peer: let our frames go first
            self._waiter = self.conn.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        frame = self._frames.popleft()
        n = len(frame[3])
        if n:
            self.conn._consumed(n)
            self._unacked += n
            if self._unacked >= WINDOW_UPDATE and not self.closed:
                self.conn.write_frame(WINDOW, self.id, 0, b"%d" % self._unacked)
                self._unacked = 0
        return frame

    async def wait_window(self) -> bool:
        """Wait until this side may send data on the stream. Returns False when sending is
        pointless (the peer reset the stream, the stream or connection is closed)."""
        while self.send_window <= 0:
            if self.reset or self.closed or self.conn.closed or self._error is not None:
                return False
            if self.conn._out:
                self.conn.flush()
            self._window_waiter = self.conn.loop.create_future()
            try:
                await self._window_waiter
            finally:
                self._window_waiter = None
        return not (self.reset or self.conn.closed)

    async def send_data(self, ftype: int, body: bytes, more: bool) -> bool:
        """Send a body chunk as ``ftype`` frames (HTTP_REQUEST / RESPONSE_BODY) within the flow-
        control window, split at ``CHUNK``, then wait for socket backpressure. False when the
        peer is gone (nothing more should be sent)."""
        n = len(body)
        if n == 0:
            self.conn.write_frame(ftype, self.id, MORE if more else 0)
            return not self.conn.closed
        view = memoryview(body) if n > CHUNK else None
        start = 0
        while start < n:
            if self.send_window <= 0 and not await self.wait_window():
                return False
            size = min(CHUNK, n - start)
            piece = body if view is None else bytes(view[start:start + size])
            start += size
            self.send_window -= size
            self.conn.write_frame(ftype, self.id, MORE if (more or start < n) else 0, b"", piece)
            if self.conn._write_paused or self.conn._out_size > FLUSH_NOW:
                await self.conn.drain()
        return True

    def send(self, ftype: int, flags: int = 0, meta: bytes = b"", data: bytes = b"") -> None:
        """Queue one frame on this stream (no-op once the connection is closed)."""
        self.conn.write_frame(ftype, self.id, flags, meta, data)

    def send_now(self, ftype: int, body: bytes, more: bool) -> bool:
        """Queue a body chunk as one ``ftype`` frame if the window allows it and it is at most
        ``CHUNK`` bytes (the common case, no await); False: use ``await send_data`` instead."""
        n = len(body)
        if n > CHUNK or n > self.send_window:
            return False
        self.send_window -= n
        self.conn.write_frame(ftype, self.id, MORE if more else 0, b"", body)
        return True

    def close(self) -> None:
        """Forget this stream locally; later inbound frames for its id are dropped."""
        self.closed = True
        self.conn.streams.pop(self.id, None)


# --------------------------------------------------------------------------------- connection


class Connection(asyncio.Protocol):
    """One end of a front ↔ worker socket (an ``asyncio.Protocol``; use with
    ``loop.create_unix_connection`` / ``create_unix_server``).

    ``on_control(type, meta_dict)``: called for every stream-0 frame.
    ``on_open(stream, scope)``: called for a ``SCOPE`` frame (worker side); the stream is registered.
    ``on_lost(exc)``: called once when the connection closes (``exc`` None on a clean EOF).
    """

    def __init__(
        self,
        on_control: Optional[Callable[[int, Any], None]] = None,
        on_open: Optional[Callable[[Stream, Dict[str, Any]], None]] = None,
        on_lost: Optional[Callable[[Optional[BaseException]], None]] = None,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.name = ""  # a label for messages (the supervisor sets the function id)
        self.extras: Dict[str, Any] = {}  # per-connection state of the code using it (e.g. upstream)
        self.on_control = on_control
        self.on_open = on_open
        self.on_lost = on_lost
        self.transport: Optional[asyncio.Transport] = None
        self.streams: Dict[int, Stream] = {}
        self.closed = False
        self.lost: asyncio.Future[Optional[BaseException]] = self.loop.create_future()  # result: the cause, or None
        self._buf = bytearray()
        self._out: List[bytes] = []
        self._out_size = 0
        self._flush_handle: Optional[asyncio.Handle] = None
        self._write_paused = False
        self._drain_waiters: Deque[asyncio.Future[None]] = deque()
        self._queued = 0
        self._read_paused = False
        self._next_id = 1

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf: Any = self._buf
        if buf or type(data) is not bytes:
            buf += data
        else:
            buf = data  # the usual case: parse the chunk itself (slices of bytes are one copy, not two)
        pos = 0
        end_buf = len(buf)
        unpack = HEADER.unpack_from
        while end_buf - pos >= HEADER_SIZE:
            mlen, dlen, sid, ftype, flags = unpack(buf, pos)
            if mlen + dlen > MAX_FRAME:
                self._protocol_error("frame of %d bytes is over the %d-byte limit" % (mlen + dlen, MAX_FRAME))
                return
            start = pos + HEADER_SIZE
            end = start + mlen + dlen
            if end > end_buf:
                break
            meta = buf[start:start + mlen] if mlen else b""
            body = buf[start + mlen:end] if dlen else b""
            if buf is self._buf:
                meta, body = bytes(meta), bytes(body)
            pos = end
            if sid == 0:
                if self.on_control is not None:
                    try:
                        obj = _loads(meta) if meta else {}
                    except ValueError:
                        self._protocol_error("control frame %d has invalid JSON" % ftype)
                        return
                    self.on_control(ftype, obj)
                continue
            stream = self.streams.get(sid)
            if ftype == WINDOW:
                if stream is not None:
                    try:
                        stream._credit(int(meta))
                    except ValueError:
                        self._protocol_error("WINDOW frame with a bad credit %r" % meta[:20])
                        return
                continue
            if stream is None:
                if ftype == SCOPE and self.on_open is not None:
                    stream = Stream(sid, self)
                    self.streams[sid] = stream
                    scope = decode_scope(meta)
                    if flags & RAW_HEADERS:
                        hl = scope.pop("_hl", 0)
                        scope["headers"] = unpack_headers(body[:hl])
                        body = body[hl:]
                    if flags & DATA_BODY:  # the first http.request rides on the SCOPE frame
                        stream._feed((HTTP_REQUEST, flags & MORE, b"", body))
                        self._queued += len(body)
                    self.on_open(stream, scope)
                continue  # frames for closed streams are dropped
            stream._feed((ftype, flags, meta, body))
            if dlen:
                self._queued += dlen
            elif ftype == DISCONNECT:
                stream._reset()
        if buf is self._buf:
            if pos:
                del buf[:pos]
        elif pos < len(buf):
            self._buf += buf[pos:]  # an incomplete frame: kept for the next chunk
        if self._queued > HIGH_WATER and not self._read_paused and self.transport is not None:
            self._read_paused = True
            self.transport.pause_reading()

    def _consumed(self, n: int) -> None:
        self._queued -= n
        if self._read_paused and self._queued < LOW_WATER and self.transport is not None and not self.closed:
            self._read_paused = False
            self.transport.resume_reading()

    def _protocol_error(self, message: str) -> None:
        exc = ProtocolError(message)
        if self.transport is not None:
            self.transport.abort()
        self._fail_all(exc)

    def eof_received(self) -> Optional[bool]:
        return False  # close the transport

    def connection_lost(self, exc: Optional[BaseException]) -> None:
        self._fail_all(exc)

    def _fail_all(self, exc: Optional[BaseException]) -> None:
        if self.closed:
            return
        self.closed = True
        error = ConnectionLost(cause=exc)
        for stream in list(self.streams.values()):
            stream.fail(error)
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        if not self.lost.done():
            self.lost.set_result(exc)
        if self.on_lost is not None:
            self.on_lost(exc)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        while self._drain_waiters:
            waiter = self._drain_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    # -- writing
    def write_frame(self, ftype: int, stream: int, flags: int = 0, meta: bytes = b"", data: bytes = b"") -> None:
        """Queue one frame; it is written at the end of this event-loop step (or at once when
        more than ``FLUSH_NOW`` bytes are pending). Silently dropped once the connection is closed.
        Raises ``FrameTooLarge`` (nothing queued) when meta + data is over ``MAX_FRAME``: the peer
        would treat such a frame as a protocol error and drop the whole connection."""
        if self.closed:
            return
        if len(meta) + len(data) > MAX_FRAME:
            raise FrameTooLarge(len(meta) + len(data))
        out = self._out
        out.append(HEADER.pack(len(meta), len(data), stream, ftype, flags))
        if meta:
            out.append(meta)
        if data:
            out.append(data)
            self._out_size += len(data)
        if self._out_size > FLUSH_NOW:
            self.flush()
        elif self._flush_handle is None:
            self._flush_handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write every queued frame now, in one ``transport.write`` call."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not self._out or self.transport is None or self.closed:
            return
        out, self._out, self._out_size = self._out, [], 0
        if len(out) == 1:
            self.transport.write(out[0])
        else:
            self.transport.write(b"".join(out))

    async def drain(self) -> None:
        """Wait while the transport's write buffer is over its high-water mark (backpressure).
        Raises ``ConnectionLost`` when the connection is closed."""
        if self.closed:
            raise ConnectionLost()
        if self._out_size > FLUSH_NOW:
            self.flush()
        if self._write_paused:
            waiter = self.loop.create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def send_control(self, ftype: int, obj: Any = None) -> None:
        """Queue a stream-0 control frame with ``obj`` as JSON meta."""
        self.write_frame(ftype, 0, 0, _dumps(obj).encode() if obj is not None else b"")

    # -- front side
    def open_stream(self, scope: Dict[str, Any], body: Optional[bytes] = None, more_body: bool = False) -> Stream:
        """Open a new stream by sending ``scope`` (front side). ``body``: the first ``http.request``
        chunk (at most ``CHUNK`` bytes), sent in the same frame (None: none yet). Raises
        ``ConnectionLost`` if closed, ``FrameTooLarge`` (no stream opened) when the scope's frame
        is over ``MAX_FRAME``."""
        if self.closed:
            raise ConnectionLost("the connection to the worker is closed")
        sid = self._next_id
        self._next_id = sid + 1 if sid < 0xFFFFFFFF else 1
        while sid in self.streams:  # only after a wrap-around
            sid = self._next_id
            self._next_id = sid + 1 if sid < 0xFFFFFFFF else 1
        flags, meta, data = scope_frame(scope)
        if len(meta) + len(data) + len(body or b"") > MAX_FRAME:
            raise FrameTooLarge(len(meta) + len(data) + len(body or b""))
        stream = Stream(sid, self)
        self.streams[sid] = stream
        if body is None:
            self.write_frame(SCOPE, sid, flags, meta, data)
        else:
            if len(body) > CHUNK:
                raise ValueError("open_stream: a first body chunk over %d bytes must go by send_data()" % CHUNK)
            stream.send_window -= len(body)
            self.write_frame(SCOPE, sid, flags | DATA_BODY | (MORE if more_body else 0), meta, data + body if data else body)
        return stream

    def close(self) -> None:
        """Flush and close the socket; open streams fail with ``ConnectionLost``."""
        if self.transport is not None and not self.closed:
            self.flush()
            self.transport.close()

    def abort(self) -> None:
        """Close the socket at once, dropping unsent frames."""
        if self.transport is not None:
            self.transport.abort()
        self._fail_all(None)
