"""Function output reaches the log whole (issue 10 item 13): lines of any length up to
``MAX_LINE`` (1 MiB) are kept byte for byte, longer ones are cut with a marker saying how much
was dropped, and the pipes are read by a thread, off the event loop. Unit tests of the splitter
and the pump, and one real ``fnserve start`` over loopback."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import httpx
from startserver import StartServer

from fnserve.supervisor.output import MAX_LINE, LineSplitter, OutputPump


def test_the_splitter_keeps_every_byte_of_lines_below_the_cap() -> None:
    splitter = LineSplitter()
    line = "y" * 65_000 + "é"
    data = (line + "\nshort\r\n" + "tail").encode()
    got = []
    for i in range(0, len(data), 4096):  # arbitrary chunk boundaries (even inside a UTF-8 character)
        got += splitter.feed(data[i:i + 4096])
    assert got == [line, "short"]
    assert splitter.end() == ["tail"] and splitter.end() == []


def test_the_splitter_truncates_only_above_the_cap_and_says_so() -> None:
    splitter = LineSplitter()
    big = b"z" * (MAX_LINE + 12345)
    got = splitter.feed(big[:MAX_LINE // 2]) + splitter.feed(big[MAX_LINE // 2:] + b"\nnext\n")
    assert got[0] == "z" * MAX_LINE + " [fnserve: line truncated, 12345 bytes dropped]"
    assert got[1:] == ["next"]


def test_the_pump_reads_in_its_own_thread_until_the_end() -> None:
    pump = OutputPump()
    r, w = os.pipe()
    seen: list[tuple[str, str]] = []
    done = threading.Event()
    pump.add(r, lambda line: seen.append((threading.current_thread().name, line)), done.set)
    os.write(w, b"a" * 70_000 + b"\nlast")
    os.close(w)
    assert done.wait(5)
    pump.close()
    assert [line for _, line in seen] == ["a" * 70_000, "last"]
    assert {name for name, _ in seen} == {"fnserve-output"}


def test_a_long_output_line_reaches_the_log_whole(tmp_path: Path) -> None:
    srv = StartServer("start_faults", tmp_path)
    srv.start()
    try:
        assert httpx.get(srv.url + "/api/loud?size=70000", timeout=30).text == "ok"
        line = srv.wait_for_line(r"<x{70000}>")
        assert "truncated" not in line
        assert httpx.get(srv.url + "/api/loud?size=2000000", timeout=30).text == "ok"
        line = srv.wait_for_line(r"line truncated, \d+ bytes dropped")
        assert line.count("x") >= MAX_LINE - 10
        assert httpx.get(srv.url + "/api/loud?size=5", timeout=30).text == "ok"
        srv.wait_for_line(r"<xxxxx>")  # the pipe keeps flowing after a cut line
    finally:
        srv.stop()
