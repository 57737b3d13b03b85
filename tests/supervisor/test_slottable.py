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
