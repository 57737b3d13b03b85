"""Function output (stdout / stderr of instances) into the log, off the front's event loop.

``OutputPump``: one thread per supervisor that reads every instance's output pipes (a
``selectors`` loop over raw file descriptors, 64 KiB reads) and hands each complete line to the
instance's sink (which makes the ``fnserve.function.<id>`` record). A function printing 20 MB per
request then costs the pump thread, not the event loop that forwards other functions' requests.

``LineSplitter``: chunks → lines. Every byte is kept: a line is cut only above ``MAX_LINE``
bytes (1 MiB, far above any sane log line); the first ``MAX_LINE`` bytes are logged with
`` [fnserve: line truncated, N bytes dropped]`` at its end, the rest of that line is dropped. A
last line without a newline is logged when the pipe closes.

``pump_reader`` does the same on the event loop for launchers that give ``asyncio.StreamReader``s
instead of descriptors.
"""

from __future__ import annotations

import asyncio
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable

__all__ = ["MAX_LINE", "LineSplitter", "OutputPump", "pump_reader"]

log = logging.getLogger("fnserve.supervisor")

MAX_LINE = 1 << 20  # bytes: longer output lines are truncated (documented in docs/SECURITY.md)
READ_SIZE = 1 << 16
BATCH_DELAY = 0.02  # s the pump waits after draining every pipe, so trickling lines are read in batches


class LineSplitter:
    """Turns output chunks into lines (str, decoded as UTF-8 with replacement, without the line
    end). ``feed(chunk) -> list[str]``; ``end() -> list[str]`` the last, unterminated line."""

    __slots__ = ("_parts", "_size", "_dropped", "max_line")

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._parts: list[bytes] = []
        self._size = 0
        self._dropped = -1  # >= 0 while dropping the rest of a line over max_line

    def feed(self, chunk: bytes) -> list[str]:
        lines: list[str] = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if self._dropped >= 0:
                self._dropped += len(piece)
            else:
                room = self.max_line - self._size
                if len(piece) > room:
                    self._parts.append(piece[:room])
                    self._dropped = len(piece) - room
                elif piece:  # nothing after a chunk's last newline: no part (end() would log an empty line)
                    self._parts.append(piece)
                    self._size += len(piece)
            if end < 0:
                return lines
            lines.append(self._line())
            start = end + 1

    def end(self) -> list[str]:
        return [self._line()] if self._parts or self._dropped >= 0 else []

    def _line(self) -> str:
        text = b"".join(self._parts).decode("utf-8", "replace").rstrip("\r")
        if self._dropped >= 0:
            text += f" [fnserve: line truncated, {self._dropped} bytes dropped]"
        self._parts, self._size, self._dropped = [], 0, -1
        return text


class OutputPump:
    """The output thread (see the module docstring). ``add(fd, sink, on_eof)``: read ``fd`` (a pipe's
    read end, which the pump owns and closes) and call ``sink(line)`` in the pump thread for every
    line, ``on_eof()`` (also in the pump thread) after the last one. ``close()`` stops the thread
    (pipes still open are read to their end first, at most ``timeout`` s)."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._pending: list[tuple[int, Callable[[str], None], Callable[[], object]]] = []
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._closed = False

    def add(self, fd: int, sink: Callable[[str], None], on_eof: Callable[[], object]) -> None:
        with self._lock:
            self._pending.append((fd, sink, on_eof))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="fnserve-output", daemon=True)
                self._thread.start()
        self._wake()

    def _wake(self) -> None:
        if self._closed:
            return
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):
            pass

    def close(self, timeout: float = 2.0) -> None:
        if self._closed:
            return
        self._closing = True
        self._wake()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
        if thread is None or not thread.is_alive():
            self._closed = True
            self._selector.close()
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _run(self) -> None:
        selector = self._selector
        while True:
            with self._lock:
                pending, self._pending = self._pending, []
            for fd, sink, on_eof in pending:
                os.set_blocking(fd, False)
                selector.register(fd, selectors.EVENT_READ, (sink, on_eof, LineSplitter()))
            if self._closing and len(selector.get_map()) <= 1:
                return
            drained = False
            for key, _ in selector.select(0.5 if not self._closing else 0.05):
                if key.data is None:
                    try:
                        os.read(self._wake_r, 4096)
                    except BlockingIOError:
                        pass
                    continue
                drained = self._read(key) < READ_SIZE or drained
            if self._closing and not selector.select(0):
                return
            if drained and not self._closing:
                # A trickle (a handler's one log line per request): let lines gather for a moment
                # instead of taking the GIL from the event loop once per line; a full read (a
                # flood) goes on at once, so a writer is never held back by this pause.
                time.sleep(BATCH_DELAY)

    def _read(self, key: selectors.SelectorKey) -> int:
        """Read once from ``key``'s pipe and log its complete lines; returns the bytes read
        (``READ_SIZE`` for a full read, 0 at the end of the output)."""
        sink, on_eof, splitter = key.data
        fd = key.fd
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            return READ_SIZE  # nothing after all: not a drained trickle
        except OSError:
            chunk = b""
        try:
            lines = splitter.feed(chunk) if chunk else splitter.end()
            for line in lines:
                sink(line)
        except Exception:  # a broken sink must not stop every function's output
            log.exception("function output could not be logged")
        if not chunk:
            self._selector.unregister(fd)
            os.close(fd)
            try:
                on_eof()
            except Exception:
                log.exception("function output: end-of-output callback failed")
        return len(chunk)


async def pump_reader(reader: asyncio.StreamReader, sink: Callable[[str], None]) -> None:
    """``OutputPump`` on the event loop, for an ``asyncio.StreamReader``: ``sink(line)`` per line
    (same ``LineSplitter`` rules) until the end of the stream."""
    splitter = LineSplitter()
    while True:
        chunk = await reader.read(READ_SIZE)
        for line in splitter.feed(chunk) if chunk else splitter.end():
            sink(line)
        if not chunk:
            return
