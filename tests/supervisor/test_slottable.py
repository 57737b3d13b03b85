"""The direct path's slot table (issue 14 item 2): the front's ``SlotTable`` and the worker's
``SlotWriter`` share one memfd; states written in one process are read in the other."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from fnserve.runtime.slotwriter import IDLE, RESPONDING, SlotWriter
from fnserve.supervisor.slottable import SlotTable


def test_assign_free_and_states_in_one_process() -> None:
    table = SlotTable(3)
    try:
        assert [table.assign(), table.assign(), table.assign(), table.assign()] == [0, 1, 2, None]
        writer = SlotWriter(os.dup(table.fd), table.size)
        writer.start(1)
        assert table.state(1) > 0 and table.busy() == 1
        writer.responding(2)
        assert table.state(2) == RESPONDING and table.busy() == 2
        assert table.overdue(0.0, time.monotonic_ns() + 1) == [1]  # the responding one is not overdue
        writer.idle(1)
        assert table.state(1) == IDLE and table.busy() == 1
        writer.start(99)  # outside the table: ignored
        table.free(2)
        assert table.state(2) == IDLE and table.assign() == 2
        writer.close()
    finally:
        table.close()


def test_another_process_writes_what_the_front_reads() -> None:
    table = SlotTable(4)
    try:
        slot = table.assign()
        assert slot == 0
        code = ("import os, sys, time; from fnserve.runtime.slotwriter import SlotWriter; "
                "w = SlotWriter(int(sys.argv[1]), 4); w.start(0); w.responding(3); w.close()")
        fd = os.dup(table.fd)
        os.set_inheritable(fd, True)
        before = time.monotonic_ns()
        subprocess.run([sys.executable, "-c", code, str(fd)], check=True, pass_fds=(fd,), timeout=30)
        os.close(fd)
        assert before < table.state(0) <= time.monotonic_ns()  # one clock for both processes
        assert table.state(3) == RESPONDING
    finally:
        table.close()


def test_the_record_of_a_request_in_progress_is_read_back_checked() -> None:
    """``SlotWriter.describe`` → ``SlotTable.request`` (what the front's 502/504 for a lost
    request says): only while a request waits for its response; cleared by the next ``start``;
    kept by ``restart``; a record that is not ``RECORD`` (a worker is not trusted) is no record."""
    from fnserve.runtime.slotwriter import SLOT_BYTES, TEXT_MAX
    from fnserve.supervisor.slottable import SlotRequest

    table = SlotTable(2)
    try:
        assert [table.assign(), table.assign()] == [0, 1]
        writer = SlotWriter(os.dup(table.fd), table.size)
        assert table.request(0) is None  # idle
        before = time.monotonic_ns()
        writer.start(0)
        assert table.request(0) == SlotRequest(None, None, None, table.state(0))  # started, not described yet
        writer.describe(0, b"req-1", "POST", b"/api/a?x=1")
        found = table.request(0)
        assert found is not None and (found.request_id, found.method, found.target) == ("req-1", "POST", "/api/a?x=1")
        assert before <= found.started_ns <= time.monotonic_ns()
        writer.restart(0)  # after a body pre-read: the clock moves, the record stays, the start is the arrival
        again = table.request(0)
        assert again is not None and again.request_id == "req-1"
        assert found.started_ns <= again.started_ns < table.state(0)  # describe's clock: the arrival, within µs
        writer.responding(0)
        assert table.request(0) is None
        writer.start(0)  # the next request on the connection: no trace of the previous one
        assert table.request(0) == SlotRequest(None, None, None, table.state(0))
        writer.describe(0, b"r2", "GET", b"/" + b"x" * 70000)  # cut to fit the slot (a head may be 64 KiB)
        long = table.request(0)
        assert long is not None and long.target == "/" + "x" * (TEXT_MAX - len("r2 GET /"))
        writer.start(1)
        writer.describe(1, b"bad id\r\n", "GET", b"/a")  # not a valid record: ignored
        assert table.request(1) == SlotRequest(None, None, None, table.state(1))
        writer.idle(0)
        assert table.request(0) is None and table.state(1) > 0 and table.busy() == 1
        assert os.fstat(table.fd).st_size == 2 * SLOT_BYTES
        writer.close()
    finally:
        table.close()
