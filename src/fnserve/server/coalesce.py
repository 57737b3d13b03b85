"""One system call per response instead of one per ASGI message (issue 14 item 1).

uvicorn's HTTP/1.1 cycle writes the status line and headers when ``http.response.start`` is sent
and the body when ``http.response.body`` is, each with its own ``transport.write`` — and uvloop
sends each at once: two TCP writes for a response the worker answered in one frame batch.
``CoalescedWrites`` stands in for the transport of uvicorn's request cycle
(``frontdoor.FrontHttpProtocol`` installs it): writes made in one event-loop step leave together
at the end of the step (``loop.call_soon``), or at once past ``FLUSH_AT`` bytes so a large body
never piles up here (the real transport's flow control still applies: uvicorn's cycle asks the
protocol's ``FlowControl``, which watches the real transport). Everything else is the transport's.
"""

from __future__ import annotations

import asyncio
from typing import Any

FLUSH_AT = 64 * 1024  # bytes pending that are written at once rather than at the end of the step


class CoalescedWrites:
    """A transport proxy: ``write`` buffers until the end of the loop step (module docstring);
    ``close``/``abort``/``write_eof`` flush first (abort drops). Other attributes: the transport's."""

    __slots__ = ("transport", "loop", "_out", "_size", "_handle")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self.loop = loop
        self._out: list[bytes] = []
        self._size = 0
        self._handle: asyncio.Handle | None = None

    def write(self, data: bytes) -> None:
        out = self._out
        out.append(data)
        self._size += len(data)
        if self._size >= FLUSH_AT:
            self.flush()
        elif self._handle is None:
            self._handle = self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is pending now, in one call."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        out = self._out
        if not out:
            return
        self._out, self._size = [], 0
        if self.transport.is_closing():
            return
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def write_eof(self) -> None:
        self.flush()
        self.transport.write_eof()

    def abort(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._out, self._size = [], 0
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)
