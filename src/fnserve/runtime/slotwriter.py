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

After the state, each slot holds the record of the request in progress (``describe``, once per
request): the ``time.monotonic_ns()`` of its arrival, then ``b"<request id> <method> <target>"``
(the target cut to what fits: ``TEXT_MAX`` bytes in all), so that the front's answer to a request
lost with its instance carries the request id the worker gave it, and the access line its method
and path (``SlotTable.request``; ``RECORD``: the text's form, which the front checks: the worker
is not trusted). ``start`` clears the record: a worker killed between ``start`` and ``describe``
leaves none, never the previous request's. The front reads a record only once the instance
has exited (no torn text).

Only the worker writes (one writer: its event loop); the front reads. An aligned 8-byte store is
atomic on the machines CPython runs on, so the front never sees a torn value. Stdlib only
(runs in the function's environment, Python 3.9+).
"""

import mmap
import os
import re
import struct
import time
from typing import Optional

IDLE = 0
RESPONDING = -1
SLOT_BYTES = 256  # one slot: its state (8 bytes), then its request's record (below)
_SLOT = struct.Struct("=q")  # the state, at slot * SLOT_BYTES
_START = struct.Struct("=qqI")  # the state, the record's clock and text length (0: no record)
RECORD_HEAD = struct.Struct("=qI")  # at slot * SLOT_BYTES + 8: the record's clock (monotonic ns), text length (uncut)
TEXT_MAX = SLOT_BYTES - _SLOT.size - RECORD_HEAD.size  # 236 bytes of text
_RECORD = struct.Struct("=qI%ds" % TEXT_MAX)  # the record, its text padded with NULs
# the record's text: request id (as server.observe takes it from X-Request-Id), method (a token), target
RECORD = re.compile(rb"([A-Za-z0-9._:+/=-]{1,128}) ([!#$%&'*+.^_`|~0-9A-Za-z-]{1,32}) ([\x21-\x7e]*)")


class SlotWriter:
    """The table of ``count`` slots in the shared memory file ``fd`` (which this object
    owns and closes). ``start(slot)``, ``responding(slot)``, ``idle(slot)`` write the three
    states; ``slot`` is the index the front assigned (``conn_id & 0xFFFFFFFF``); an index
    outside the table is ignored (a front bug must not crash the instance). Raises
    ``OSError`` / ``ValueError`` when the file cannot be mapped."""

    __slots__ = ("count", "_map", "_pack", "_pack_start", "_pack_record")

    def __init__(self, fd: int, count: int) -> None:
        try:
            self._map: Optional[mmap.mmap] = mmap.mmap(fd, count * SLOT_BYTES, mmap.MAP_SHARED,
                                                       mmap.PROT_READ | mmap.PROT_WRITE)
        finally:
            os.close(fd)
        self.count = count
        self._pack = _SLOT.pack_into
        self._pack_start = _START.pack_into
        self._pack_record = _RECORD.pack_into

    def _write(self, slot: int, value: int) -> None:
        if self._map is not None and 0 <= slot < self.count:
            self._pack(self._map, slot * SLOT_BYTES, value)

    def start(self, slot: int) -> None:
        """A request's head was accepted on ``slot``'s connection (before its app runs); its
        record is cleared until ``describe``."""
        if self._map is not None and 0 <= slot < self.count:
            self._pack_start(self._map, slot * SLOT_BYTES, time.monotonic_ns() or 1, 0, 0)

    def restart(self, slot: int) -> None:
        """The request on ``slot`` is dispatched again later (its body was pre-read): its clock,
        which ``maxDuration`` counts from, starts again; its record stays."""
        self._write(slot, time.monotonic_ns() or 1)

    def describe(self, slot: int, request_id: bytes, method: str, target: bytes) -> None:
        """The record of the request ``start`` began on ``slot``: ``request_id`` (the id the app
        sees as ``x-request-id``: 1-128 of ``A-Z a-z 0-9 . _ : + / = -``), ``method`` (ASCII),
        ``target`` (the request target as sent: path and query, visible ASCII; cut to fit)."""
        if self._map is not None and 0 <= slot < self.count:
            text = b"%s %s %s" % (request_id, method.encode("ascii"), target)
            # its length as is (the reader takes at most TEXT_MAX bytes): no min() on this per-request path
            self._pack_record(self._map, slot * SLOT_BYTES + 8, time.monotonic_ns(), len(text), text)

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
