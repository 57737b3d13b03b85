"""The front's side of a direct-path slot table (issue 14 item 2; see ``runtime.slotwriter``).

One ``SlotTable`` per instance that has a direct channel: a memfd of ``size`` signed 64-bit
slots, sent once to the instance (``fd``), which writes into it the state of each connection the
front passed to it; the front assigns a slot per passed connection and reads the states to
answer 502/504 on its duplicate of the socket when the instance dies (``state``; ``request``: the
id, method and target the worker recorded for that request), to enforce ``maxDuration`` as a
backstop (``overdue``) and to count requests in progress (``busy``).
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from dataclasses import dataclass

from fnserve.runtime.slotwriter import IDLE, RECORD, RECORD_HEAD, RESPONDING, SLOT_BYTES, TEXT_MAX

__all__ = ["IDLE", "RESPONDING", "SlotRequest", "SlotTable"]

_SLOT = struct.Struct("=q")


@dataclass(frozen=True)
class SlotRequest:
    """The request in progress on a slot, as its worker recorded it (``SlotWriter.describe``).
    ``request_id``: the id the app saw as ``x-request-id`` (1-128 of ``A-Z a-z 0-9 . _ : + / =
    -``); ``method``: a token; ``target``: the request target as sent (path and query, visible
    ASCII, cut at ``TEXT_MAX`` bytes of record); each None when the worker left no valid record
    (it died between its ``start`` and ``describe``). ``started_ns``: ``time.monotonic_ns()`` of
    its arrival (of its dispatch when there is no record)."""

    request_id: str | None
    method: str | None
    target: str | None
    started_ns: int


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

    def request(self, slot: int) -> SlotRequest | None:
        """The request in progress on ``slot`` (a ``SlotRequest``), or None when its state says
        no request is waiting for its response (``IDLE``, ``RESPONDING``). The record is checked
        (``runtime.slotwriter.RECORD``): a worker is not trusted."""
        offset = slot * SLOT_BYTES
        state = int(_SLOT.unpack_from(self._map, offset)[0])
        if state <= 0:
            return None
        started, length = RECORD_HEAD.unpack_from(self._map, offset + _SLOT.size)
        at = offset + _SLOT.size + RECORD_HEAD.size
        match = RECORD.fullmatch(self._map[at:at + min(length, TEXT_MAX)]) if length else None
        if match is None or started <= 0:
            return SlotRequest(None, None, None, state)
        request_id, method, target = (part.decode("ascii") for part in match.groups())
        # the state is the head's arrival, or its dispatch after a body pre-read (restart): the earlier
        return SlotRequest(request_id, method, target, min(started, state))

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
