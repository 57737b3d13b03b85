"""Memory limits per instance (SPEC §5 ``memory`` MB, §9): strategies behind one base class.

``detect_memory_limiter()`` picks, at run time, the first that works here:

- ``CgroupV2Memory`` ("cgroup2"): a leaf cgroup per instance under ``<own cgroup>/fnserve-<pid>/``
  with ``memory.max`` = the limit and ``memory.swap.max`` = 0; needs the memory controller
  delegated to the supervisor's cgroup (``cgroup.subtree_control`` writable);
- ``CgroupV1Memory`` ("cgroup1"): the same under the v1 memory hierarchy
  (``memory.limit_in_bytes`` and, when present, ``memory.memsw.limit_in_bytes``);
- ``RlimitMemory`` ("rlimit"): ``RLIMIT_AS`` in the worker with generous headroom (address space is
  not memory: thread stacks and malloc arenas reserve far more than they use), so it only stops a
  runaway; the limit proper is the RSS polling below.

The worker joins its cgroup itself, before it imports the function (worker options ``cgroup`` =
the path of ``cgroup.procs`` to write its pid to, and ``rlimit_as`` bytes), so forked and spawned
instances are handled alike. With a cgroup (``enforces(key, pid)``: the limit is written and the
pid is in it) the kernel kills the instance (SIGKILL) the moment it goes over, and nothing is
polled; ``oom_killed`` / ``peak_mb`` then say why (``memory.oom.group`` = 1 on v2: the whole
instance, children included, is killed together; on v1 the kernel kills the largest process of
the cgroup). Without one, the supervisor polls the RSS of each instance's process group
(``memory.MemoryGuard``) and replaces an instance over its limit.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from .launch import pid_alive

log = logging.getLogger("fnserve.supervisor.limits")

MB = 1024 * 1024
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
CGROUP_ROOT = Path("/sys/fs/cgroup")


def rss_mb(pid: int) -> float | None:
    """Resident set size of ``pid`` in MB (``/proc/<pid>/statm``), None if it is gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * PAGE / MB
    except (OSError, IndexError, ValueError):
        return None


def private_mb(pid: int) -> float | None:
    """Private memory of ``pid`` in MB: ``Private_Clean + Private_Dirty`` of ``/proc/<pid>/smaps_rollup``."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            kb = sum(int(line.split()[1]) for line in f if line.startswith(("Private_Clean:", "Private_Dirty:")))
        return kb / 1024
    except (OSError, IndexError, ValueError):
        return None


class MemoryLimiter:
    """Strategy base. ``options(key, limit_mb) -> dict`` of worker options for a new instance
    (``key``: unique per instance); ``oom_killed(key) -> bool`` after its exit; ``peak_mb(key)``;
    ``release(key)`` once it exited; ``close()`` at shutdown. Never raises for one instance."""

    name = "none"

    def options(self, key: str, limit_mb: int) -> dict[str, Any]:
        return {}

    def spare(self) -> str | None:
        """A new cgroup without a limit for a zygote's NEXT standby child to join ahead of time
        (joining can take ~10 ms in the kernel); returns its ``cgroup.procs`` or None."""
        return None

    def adopt(self, procs: str, key: str, limit_mb: int) -> bool:
        """The instance ``key`` already runs in the spare cgroup ``procs``: make it its cgroup
        (limit written now; the one ``options`` made is removed). False if ``procs`` is unknown."""
        return False

    def discard(self, procs: str) -> None:
        """A spare that will never be used (its standby was replaced): remove it."""
        return None

    def oom_killed(self, key: str) -> bool:
        return False

    def enforces(self, key: str, pid: int) -> bool:
        """True when the kernel holds process ``pid`` of instance ``key`` to its limit (it runs
        in the instance's limited cgroup): then it needs no polling."""
        return False

    def peak_mb(self, key: str) -> float | None:
        return None

    def release(self, key: str) -> None:
        return None

    def close(self) -> None:
        return None


class RlimitMemory(MemoryLimiter):
    """``RLIMIT_AS`` = ``max(2 × limit, limit + headroom_mb)`` in the worker; RSS polling does the rest."""

    name = "rlimit"

    def __init__(self, headroom_mb: int = 2048) -> None:
        self.headroom_mb = headroom_mb

    def options(self, key: str, limit_mb: int) -> dict[str, Any]:
        return {"rlimit_as": max(2 * limit_mb, limit_mb + self.headroom_mb) * MB}


class _Cgroup(MemoryLimiter):
    limit_file = ""
    swap_file = ""
    peak_file = ""
    events_file = ""
    group_file = ""  # memory.oom.group (v2): an OOM kill takes every process of the cgroup

    def __init__(self, base: Path) -> None:
        self.base = base  # our own folder, created by probe()
        self.paths: dict[str, Path] = {}
        self._stale: list[Path] = []  # released but not removed yet
        self._spares: dict[str, Path] = {}  # cgroup.procs → folder, handed to zygotes for standbys
        self._spare_count = 0
        self._unlimited: set[str] = set()  # keys whose limit could not be written (polled instead)

    def options(self, key: str, limit_mb: int) -> dict[str, Any]:
        if self._stale:
            self.release("")
        path = self.base / key
        try:
            path.mkdir(exist_ok=True)
            self._limit(path, limit_mb)
        except OSError as exc:
            log.warning("cannot create the memory cgroup %s (%s); this instance relies on RSS polling", path, exc)
            return {}
        self.paths[key] = path
        return {"cgroup": str(path / "cgroup.procs")}

    def _swap_value(self, limit_mb: int) -> int | str:
        return limit_mb * MB

    def _limit(self, path: Path, limit_mb: int) -> None:
        """Write the limit (raises OSError), swap off and the group OOM kill (best effort)."""
        self._write(path / self.limit_file, limit_mb * MB)
        for name, value in ((self.swap_file, self._swap_value(limit_mb)), (self.group_file, 1)):
            if name and (path / name).exists():
                try:
                    self._write(path / name, value)
                except OSError:
                    pass

    def enforces(self, key: str, pid: int) -> bool:
        path = self.paths.get(key)
        if path is None or key in self._unlimited:
            return False
        try:
            with open(path / "cgroup.procs", "rb") as f:
                return str(pid).encode() in f.read().split()
        except OSError:
            return False

    def spare(self) -> str | None:
        self._spare_count += 1
        path = self.base / f"spare-{self._spare_count}"
        try:
            path.mkdir()
        except OSError:
            return None
        procs = str(path / "cgroup.procs")
        self._spares[procs] = path
        return procs

    def adopt(self, procs: str, key: str, limit_mb: int) -> bool:
        path = self._spares.pop(procs, None)
        if path is None:
            return False
        try:
            self._limit(path, limit_mb)
            self._unlimited.discard(key)
        except OSError as exc:
            log.warning("cannot set the memory limit on %s (%s); this instance relies on RSS polling", path, exc)
            self._unlimited.add(key)
        old = self.paths.get(key)
        self.paths[key] = path
        if old is not None:
            self._stale.append(old)
        return True

    def discard(self, procs: str) -> None:
        """A spare that will never be used (its standby was replaced)."""
        path = self._spares.pop(procs, None)
        if path is not None:
            self._stale.append(path)

    @staticmethod
    def _write(path: Path, value: Any) -> None:
        with open(path, "w") as f:
            f.write(str(value))

    def _read(self, key: str, name: str) -> str | None:
        path = self.paths.get(key)
        try:
            return (path / name).read_text() if path else None
        except OSError:
            return None

    def oom_killed(self, key: str) -> bool:
        text = self._read(key, self.events_file) or ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] == "oom_kill":
                return int(parts[1]) > 0
        return False

    def peak_mb(self, key: str) -> float | None:
        text = self._read(key, self.peak_file)
        return int(text) / MB if text and text.strip().isdigit() else None

    def release(self, key: str) -> None:
        """Remove the instance's cgroup. Never blocks: one that is still busy (the kernel may
        need a moment after the last process exits) is retried on later calls and at close."""
        path = self.paths.pop(key, None)
        self._unlimited.discard(key)
        if path is not None:
            self._stale.append(path)
        still = []
        for stale in self._stale:
            try:
                stale.rmdir()
            except FileNotFoundError:
                pass
            except OSError:
                still.append(stale)
        self._stale = still

    def close(self) -> None:
        for key in list(self.paths):
            self.release(key)
        self._stale.extend(self._spares.values())
        self._spares.clear()
        for _ in range(50):
            self.release("")
            if not self._stale:
                break
            time.sleep(0.01)  # shutdown only
        try:
            self.base.rmdir()
        except FileNotFoundError:
            pass  # closed before (shutdown runs twice: the drain, then the final clean-up)
        except OSError as exc:  # a process still in it: the next fnserve's sweep removes it
            log.debug("cgroup folder %s not removed yet (%s)", self.base, exc)


class CgroupV1Memory(_Cgroup):
    name = "cgroup1"
    limit_file = "memory.limit_in_bytes"
    swap_file = "memory.memsw.limit_in_bytes"
    peak_file = "memory.max_usage_in_bytes"
    events_file = "memory.oom_control"


class CgroupV2Memory(_Cgroup):
    name = "cgroup2"
    limit_file = "memory.max"
    swap_file = "memory.swap.max"
    peak_file = "memory.peak"
    events_file = "memory.events"
    group_file = "memory.oom.group"

    def _swap_value(self, limit_mb: int) -> int | str:
        return 0


def _own_cgroups() -> dict[str, str]:
    """``/proc/self/cgroup`` as ``{controller or "" (v2): path}``."""
    found: dict[str, str] = {}
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return found
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) == 3:
            for name in parts[1].split(",") if parts[1] else [""]:
                found[name] = parts[2]
    return found


def sweep_stale_cgroups(cg: Path) -> list[Path]:
    """Remove the ``fnserve-<pid>`` folders under cgroup ``cg`` whose fnserve process is gone (a
    ``kill -9`` leaves them), with their per-instance leaves (a cgroup still holding a process
    stays). Returns the folders removed."""
    removed: list[Path] = []
    try:
        entries = list(cg.iterdir())
    except OSError:
        return removed
    for base in entries:
        owner = base.name[len("fnserve-"):] if base.name.startswith("fnserve-") else ""
        if not owner.isdigit() or int(owner) == os.getpid() or pid_alive(int(owner)):
            continue
        try:
            for leaf in base.iterdir():
                if leaf.is_dir():
                    leaf.rmdir()
            base.rmdir()
        except OSError as exc:
            log.warning("could not remove the stale cgroup folder %s (%s)", base, exc)
            continue
        removed.append(base)
    return removed


def _probe_v2(own: dict[str, str], root: Path) -> MemoryLimiter | None:
    if "" not in own:
        return None
    for mount in (root, root / "unified"):
        cg = mount / own[""].lstrip("/")
        try:
            if "memory" not in (cg / "cgroup.controllers").read_text().split():
                continue
            sweep_stale_cgroups(cg)
            base = cg / f"fnserve-{os.getpid()}"
            base.mkdir(exist_ok=True)
            try:
                if "memory" not in (cg / "cgroup.subtree_control").read_text().split():
                    _Cgroup._write(cg / "cgroup.subtree_control", "+memory")
                _Cgroup._write(base / "cgroup.subtree_control", "+memory")
            except OSError:
                base.rmdir()
                continue
            return CgroupV2Memory(base)
        except OSError:
            continue
    return None


def _probe_v1(own: dict[str, str], root: Path) -> MemoryLimiter | None:
    if "memory" not in own:
        return None
    cg = root / "memory" / own["memory"].lstrip("/")
    sweep_stale_cgroups(cg)
    base = cg / f"fnserve-{os.getpid()}"
    try:
        base.mkdir(exist_ok=True)
        if not (base / "memory.limit_in_bytes").exists():
            base.rmdir()
            return None
    except OSError:
        return None
    return CgroupV1Memory(base)


def detect_memory_limiter(prefer: str = "auto", root: Path = CGROUP_ROOT) -> MemoryLimiter:
    """The memory limiter to use here. ``prefer``: "auto" (cgroup v2, else v1, else rlimit),
    "cgroup2", "cgroup1", "rlimit" or "none" (a named cgroup backend that cannot work falls back
    to rlimit with a warning)."""
    if prefer in ("rlimit", "none"):
        return RlimitMemory() if prefer == "rlimit" else MemoryLimiter()
    own = _own_cgroups()
    probes = {"cgroup2": (_probe_v2,), "cgroup1": (_probe_v1,)}.get(prefer, (_probe_v2, _probe_v1))
    for probe in probes:
        limiter = probe(own, root)
        if limiter is not None:
            log.info("memory limits: %s under %s", limiter.name, getattr(limiter, "base", ""))
            return limiter
    if prefer != "auto":
        log.warning("memory limits: no writable %s memory controller here; using RLIMIT_AS + RSS polling", prefer)
    return RlimitMemory()


MEMORY_LIMITERS: dict[str, type[MemoryLimiter]] = {
    "none": MemoryLimiter, "rlimit": RlimitMemory, "cgroup1": CgroupV1Memory, "cgroup2": CgroupV2Memory,
}
