"""The worker's side of a direct-path slot table (issue 14 item 2, design "(e)" of docs/ARCHITECTURE.md).

The front keeps a duplicate of every client socket it passed to an instance, so that it can
still answer 502/504 on it when the instance dies or runs past ``maxDuration``; to know which
connections have a request in progress without a message per request, the instance writes one
signed 64-bit integer per connection into a table in shared memory (a memfd the front created
and sent once, ``supervisor.slottable.SlotTable``):

- ``0``: no request in progress on that connection;
- ``> 0``: a request in progress whose response has not started: its start, ``time.monotonic_ns()``
  (CLOCK_MONOTONIC is the same clock in every process of the machine);
- ``-1`` (``RESPONDING``): a response started and is not finished.

Only the worker writes (one writer: its event loop); the front reads. An aligned 8-byte store is
atomic on the machines CPython runs on, so the front never sees a torn value. Stdlib only
(runs in the function's environment, Python 3.9+).
"""

import mmap
import os
import struct
import time
from typing import Optional

IDLE = 0
RESPONDING = -1
SLOT_BYTES = 8
_SLOT = struct.Struct("=q")


class SlotWriter:
    """The table of ``count`` slots in the shared memory file ``fd`` (which this object
    owns and closes). ``start(slot)``, ``responding(slot)``, ``idle(slot)`` write the three
    states; ``slot`` is the index the front assigned (``conn_id & 0xFFFFFFFF``); an index
    outside the table is ignored (a front bug must not crash the instance). Raises
    ``OSError`` / ``ValueError`` when the file cannot be mapped."""

    __slots__ = ("count", "_map", "_pack")

    def __init__(self, fd: int, count: int) -> None:
        try:
            self._map: Optional[mmap.mmap] = mmap.mmap(fd, count * SLOT_BYTES, mmap.MAP_SHARED,
                                                       mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.count = count
        self._pack = _SLOT.pack_into

    def _write(self, slot: int, value: int) -> None:
        if self._map is not None and 0 <= slot < self.count:
            self._pack(self._map, slot * SLOT_BYTES, value)

    def start(self, slot: int) -> None:
        """A request's head was accepted on ``slot``'s connection (before its app runs)."""
        self._write(slot, time.monotonic_ns() or 1)

    def responding(self, slot: int) -> None:
        """The first byte of the response is about to be written."""
        self._write(slot, RESPONDING)

    def idle(self, slot: int) -> None:
        """The response is complete (or the connection leaves this instance)."""
        self._write(slot, IDLE)

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None
