"""No leaks across runs (issue 10 item 17): the worker socket folders (``/tmp/fnserve-<pid>-*``)
and memory cgroup folders (``fnserve-<pid>``) of an fnserve that was ``kill -9``ed are removed
at the next start; a normal stop removes its own and prints no "remove it by hand" warning."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from pathlib import Path

import httpx
from startserver import StartServer

from fnserve.supervisor.limits import sweep_stale_cgroups
from fnserve.supervisor.starter import SOCKET_PREFIX, sweep_stale_sockets


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_socket_folders_of_dead_processes_are_swept(tmp_path: Path) -> None:
    dead = tmp_path / f"{SOCKET_PREFIX}{_dead_pid()}-abc"
    alive = tmp_path / f"{SOCKET_PREFIX}{os.getpid()}-def"
    other = tmp_path / "fnserve-unrelated"
    for folder in (dead, alive, other):
        folder.mkdir()
        (folder / "workers.sock").write_text("")
    assert sweep_stale_sockets(tmp_path) == [dead]
    assert not dead.exists() and alive.exists() and other.exists()


def test_cgroup_folders_of_dead_processes_are_swept(tmp_path: Path) -> None:
    dead = tmp_path / f"fnserve-{_dead_pid()}"
    (dead / "leaf1").mkdir(parents=True)
    (dead / "spare").mkdir()
    alive = tmp_path / f"fnserve-{os.getpid()}"
    alive.mkdir()
    assert sweep_stale_cgroups(tmp_path) == [dead]
    assert not dead.exists() and alive.exists()


def _memory_cgroup() -> Path | None:
    """Our cgroup v1 memory folder when it is writable (then fnserve puts instances there)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        parts = line.split(":", 2)
        if parts[1] == "memory":
            folder = Path("/sys/fs/cgroup/memory") / parts[2].lstrip("/")
            return folder if os.access(folder, os.W_OK) else None
    return None


def test_kill_9_leftovers_are_swept_and_a_normal_stop_leaves_nothing(tmp_path: Path) -> None:
    cgroup = _memory_cgroup()
    first = StartServer("start_basic", tmp_path / "one", "--memory", "256")
    first.start()
    assert httpx.get(first.url + "/api/version", timeout=30).status_code == 200
    pid = first.proc.pid
    tmp = Path(tempfile.gettempdir())
    assert list(tmp.glob(f"{SOCKET_PREFIX}{pid}-*"))
    os.kill(pid, signal.SIGKILL)
    first.proc.wait(10)
    first.stop()  # the rest of its process group
    assert list(tmp.glob(f"{SOCKET_PREFIX}{pid}-*"))  # left behind
    if cgroup is not None:
        assert (cgroup / f"fnserve-{pid}").exists()
    second = StartServer("start_basic", tmp_path / "two", "--memory", "256")
    second.start()
    try:
        assert httpx.get(second.url + "/api/version", timeout=30).status_code == 200
        assert not list(tmp.glob(f"{SOCKET_PREFIX}{pid}-*"))
        assert cgroup is None or not (cgroup / f"fnserve-{pid}").exists()
    finally:
        second.signal(signal.SIGTERM)
        assert second.wait(20) == 0
    assert not list(tmp.glob(f"{SOCKET_PREFIX}{second.proc.pid}-*"))
    assert not [line for line in second.lines if "by hand" in line], second.output()
    assert cgroup is None or not (cgroup / f"fnserve-{second.proc.pid}").exists()
