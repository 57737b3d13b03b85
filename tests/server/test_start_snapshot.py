"""``fnserve start`` serves the code it validated (issue 10 item 2): instances run an immutable
snapshot of the project under ``.fnserve/snapshots/``, so a cold start after a rejected SIGHUP,
or after an edit without SIGHUP, still runs the last good version. Real server subprocess."""

from __future__ import annotations

import os
import signal
import stat
from pathlib import Path

import httpx
import pytest
from startserver import StartServer

from fnserve.server.snapshots import Snapshots


@pytest.fixture
def srv(tmp_path: Path):
    server = StartServer("start_basic", tmp_path)
    server.start()
    yield server
    server.stop()


def test_a_cold_start_after_a_rejected_reload_runs_the_last_good_version(srv) -> None:
    version = srv.project / "api" / "version.py"
    version.write_text("def broken(:\n")  # never requested before: its first instance starts after this
    mark = len(srv.lines)
    srv.signal(signal.SIGHUP)
    srv.wait_for_line(r"reload failed, still serving the previous version", timeout=20, start=mark)
    r = httpx.get(srv.url + "/api/version", timeout=30)
    assert (r.status_code, r.text) == (200, "v1")


def test_an_edit_without_sighup_is_not_served_until_the_reload(srv) -> None:
    version = srv.project / "api" / "version.py"
    version.write_text(version.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
    assert httpx.get(srv.url + "/api/version", timeout=30).text == "v1"  # cold start: the snapshot
    mark = len(srv.lines)
    srv.signal(signal.SIGHUP)
    srv.wait_for_line(r"reload: done", timeout=20, start=mark)
    assert httpx.get(srv.url + "/api/version", timeout=30).text == "v2"


def test_snapshots_are_read_only_and_removed_at_exit(srv) -> None:
    folder = srv.project / ".fnserve" / "snapshots"
    [snapshot] = [p for p in folder.iterdir()]
    copied = snapshot / "api" / "version.py"
    assert copied.read_text() == (srv.project / "api" / "version.py").read_text()
    assert not stat.S_IMODE(copied.stat().st_mode) & 0o222
    srv.signal(signal.SIGTERM)
    assert srv.wait(20) == 0
    assert list(folder.iterdir()) == []


def test_unchanged_files_are_linked_and_dead_owners_swept(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "a.py").write_text("A = 1\n")
    (tmp_path / "api" / "b.py").write_text("B = 1\n")
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "big.bin").write_bytes(b"x" * 1000)
    snaps = Snapshots(tmp_path)
    first = snaps.take()
    (tmp_path / "api" / "b.py").write_text("B = 22\n")
    second = snaps.take()
    assert (second / "api" / "a.py").stat().st_ino == (first / "api" / "a.py").stat().st_ino
    assert (second / "api" / "b.py").read_text() == "B = 22\n"
    assert (first / "api" / "b.py").read_text() == "B = 1\n"  # the older version is untouched
    assert not (second / "public").exists()
    stale = snaps.folder / "999999999-1"  # no such pid
    stale.mkdir()
    assert snaps.sweep() == [stale] and first.exists()
    snaps.close()
    assert list(snaps.folder.iterdir()) == []
    assert os.access(tmp_path / "api" / "b.py", os.W_OK)  # the project itself stays writable
