"""``bench/scale.py``'s per cold start figures (issue 14 item 3 acceptance): the instance's CPU and
page faults, the zygote's and the front's CPU per hit, the READY log line the bench reads, and the
machine's first-touch probe. One run over a real ``fnserve start`` on 127.0.0.1 port 0 (3 functions)."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scale.py"


@pytest.fixture(scope="module")
def scale() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fnserve_bench_scale", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_ready_line_format(scale: ModuleType) -> None:
    line = "INFO api/f0001.py: worker 4242 ready in 12.5 ms (cold start, forked; import + startup 1.5 ms)"
    assert scale.ready_lines(["GET /api/f0001 200", line]) == [(4242, 12.5, 1.5)]


def test_process_figures(scale: ModuleType) -> None:
    me = os.getpid()
    assert scale.sched_ms(me) > 0.0
    assert scale.sched_ms(me, threads=True) >= scale.sched_ms(me)
    assert scale.minor_faults(me) > 0
    gone = 2**22 + 12345  # above the largest pid_max Linux allows (2**22): no such process
    assert scale.sched_ms(gone) == 0.0 and scale.minor_faults(gone) == 0


def test_first_touch_probe(scale: ModuleType) -> None:
    first, last = scale.first_touch(48)
    assert 0.0 < first < 10_000.0 and 0.0 < last < 10_000.0  # µs per 4 KiB page


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_measure_start_reports_each_cold_start(scale: ModuleType) -> None:
    row = scale.measure("start", 3, 0.0, idle=False)
    assert row["failed"] == 0
    assert row["cold_starts"] == 2  # f0001 and f0002 (f0000 was the launch)
    assert float(row["q1"]) > 0.0 and float(row["ratio"]) > 0.0
    assert float(row["inst_q1"]) > 0.0 and float(row["inst_q4"]) > 0.0  # the new instances' CPU ms
    assert float(row["faults_q1"]) > 0.0
    assert float(row["ready_q1"]) > 0.0
    assert float(row["cpu_q1"]) > 0.0  # the front's CPU ms per hit
