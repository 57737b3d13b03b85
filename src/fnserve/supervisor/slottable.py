"""The front's side of a direct-path slot table (issue 14 item 2; see ``runtime.slotwriter``).

One ``SlotTable`` per instance that has a direct channel: a memfd of ``size`` signed 64-bit
slots, sent once to the instance (``fd``), which writes into it the state of each connection the
front passed to it; the front assigns a slot per passed connection and reads the states to
answer 502/504 on its duplicate of the socket when the instance dies (``states``), to enforce
``maxDuration`` as a backstop (``overdue``) and to count requests in progress (``busy``).
"""

from __future__ import annotations

import mmap
import os
import struct
import time

from fnserve.runtime.slotwriter import IDLE, RESPONDING, SLOT_BYTES

__all__ = ["IDLE", "RESPONDING", "SlotTable"]

_SLOT = struct.Struct("=q")


class SlotTable:
    """``size`` slots in a new anonymous shared memory file. ``fd``: the memfd to send to the
    instance (kept open until ``close``). ``assign()`` → a free slot index or None (all taken);
    ``free(slot)`` resets it to ``IDLE`` and makes it assignable again. Raises ``OSError`` when
    the memory cannot be created (no ``memfd_create``: the caller passes no connection)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.fd = os.memfd_create("fnserve-slots", os.MFD_CLOEXEC)
        try:
            os.ftruncate(self.fd, size * SLOT_BYTES)
            self._map = mmap.mmap(self.fd, size * SLOT_BYTES, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(self.fd)
            raise
        self._free = list(range(size - 1, -1, -1))  # pop() hands out 0, 1, 2, ...
        self.assigned: set[int] = set()

    def assign(self) -> int | None:
        if not self._free:
            return None
        slot = self._free.pop()
        _SLOT.pack_into(self._map, slot * SLOT_BYTES, IDLE)
        self.assigned.add(slot)
        return slot

    def free(self, slot: int) -> None:
        if slot in self.assigned:
            self.assigned.discard(slot)
            _SLOT.pack_into(self._map, slot * SLOT_BYTES, IDLE)
            self._free.append(slot)

    def state(self, slot: int) -> int:
        """``IDLE`` (0), ``RESPONDING`` (-1), or the request's start in ``time.monotonic_ns()``."""
        return int(_SLOT.unpack_from(self._map, slot * SLOT_BYTES)[0])

    def busy(self) -> int:
        """Assigned slots with a request in progress (not ``IDLE``)."""
        unpack, view = _SLOT.unpack_from, self._map
        return sum(1 for slot in self.assigned if unpack(view, slot * SLOT_BYTES)[0] != IDLE)

    def overdue(self, limit_s: float, now_ns: int | None = None) -> list[int]:
        """Assigned slots whose request started more than ``limit_s`` seconds ago and has not
        started its response."""
        now = time.monotonic_ns() if now_ns is None else now_ns
        cutoff = now - int(limit_s * 1e9)
        unpack, view = _SLOT.unpack_from, self._map
        return [slot for slot in self.assigned if 0 < unpack(view, slot * SLOT_BYTES)[0] < cutoff]

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None  # type: ignore[assignment]
            os.close(self.fd)
