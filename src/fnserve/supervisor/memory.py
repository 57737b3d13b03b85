"""The ``memory`` limit of instances (SPEC §5 ``memory`` MB, §9), one ``MemoryGuard`` per supervisor.

It wraps the ``MemoryLimiter`` strategy (``limits``: cgroup v2 / v1 or ``RLIMIT_AS``, detected
when an instance first needs a limit) and keeps the per-instance bookkeeping: the worker options
of a new instance, the spare cgroup a zygote's standby joined ahead of time, why an instance
exited (the kernel's OOM kill in its cgroup), and which instances need polling.

Enforcement, cheapest first (issue 14 item 3: nothing per instance per poll when the kernel can do it):

- **kernel** (``watch`` finds the ready instance's pid in its limited cgroup): nothing is polled.
  The kernel stops the cgroup — the worker and every process it forked — at the limit (SIGKILL;
  cgroup v2 with ``memory.oom.group``: the whole instance), and ``classify_exit`` reads the
  cgroup's OOM kill count (``memory.events`` / ``memory.oom_control``) when the instance exits.
  Detection latency: none (the kernel acts at the allocation that goes over).
- **polled** (no writable cgroup, ``rlimit`` mode, or a cgroup the worker could not join): one
  pass over ``/proc/*/stat`` per round for all polled instances together (``group_usage``), the
  RSS summed per process group: an instance counts the memory of every process in its group
  (children it forked; the instance is its group's leader, ``pgid == pid``), so a child cannot
  hold memory past the limit while the worker stays small. A forked instance (zygote) over its
  limit by RSS is measured again by private memory (``smaps_rollup``) of its group's processes,
  since RSS also counts the pages shared with the zygote. Rounds run every ``poll`` s, or less
  often when a round costs more than ``duty`` of a core (``next_round``), in slices that yield
  to the event loop. Detection latency: one round interval + the round (about ``poll`` = 0.25 s
  with a few hundred processes on the host; ~0.5 s with 1,000 instances), then SIGKILL.
  A child that leaves its process group (``setsid``) escapes the polled limit: only a cgroup holds.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from typing import Any

from .instance import Instance
from .limits import MB, PAGE, MemoryLimiter, detect_memory_limiter, private_mb, rss_mb

SLICE = 256  # /proc entries read between two yields to the event loop


class MemoryGuard:
    """Memory limits of instances. ``choice``: a ``MemoryLimiter`` or its name for
    ``detect_memory_limiter`` ("auto", "cgroup2", "cgroup1", "rlimit", "none"). ``poll``: s
    between polling rounds at least; ``duty``: the share of one core polling may take (rounds
    are spaced out when one costs more). ``polled``: instance → its process group (the
    instances whose limit the kernel does not hold)."""

    def __init__(self, choice: MemoryLimiter | str = "auto", *, poll: float = 0.25, duty: float = 0.02) -> None:
        self._choice = choice
        self._limiter: MemoryLimiter | None = choice if isinstance(choice, MemoryLimiter) else None
        self.poll = poll
        self.duty = duty
        self.polled: dict[Instance, int] = {}
        self.last_round_s = 0.0  # s of CPU time (the loop thread) the last round took

    @property
    def limiter(self) -> MemoryLimiter:
        """The strategy in use (detected on first use)."""
        if self._limiter is None:
            self._limiter = detect_memory_limiter(str(self._choice))
        return self._limiter

    def options(self, inst: Instance, memory: int, standby_cgroups: bool) -> dict[str, Any]:
        """Worker options limiting ``inst`` to ``memory`` MB (``inst.limit_key`` set). With
        ``standby_cgroups`` (a zygote launcher) and a cgroup limiter, also ``standby_cgroup``: a
        spare cgroup for the zygote's next standby."""
        limiter = self.limiter
        options = limiter.options(inst.token, memory)
        inst.limit_key = inst.token
        if options.get("cgroup") and standby_cgroups:
            options["standby_cgroup"] = limiter.spare()
        return options

    def adopt(self, inst: Instance, process: Any, memory: int, spare: str | None) -> None:
        """A forked standby was already in a spare cgroup: make it the instance's (limit written
        now, ~1 ms after the fork: that window is not limited). Spares the zygote will not use,
        or that a spawn fallback ignored, are removed."""
        limiter = self.limiter
        if spare and not hasattr(process, "discarded"):
            limiter.discard(spare)  # not forked by a zygote
        for procs in getattr(process, "discarded", ()):
            limiter.discard(procs)
        cgroup = getattr(process, "cgroup", None)
        if cgroup:
            limiter.adopt(cgroup, inst.token, memory)

    def watch(self, inst: Instance) -> bool:
        """``inst`` (with a memory limit) is ready: leave it to the kernel when its pid is in its
        limited cgroup, else poll it (its process group). Returns True when it is polled."""
        pid = inst.pid
        if pid is None:
            return False
        key = inst.limit_key
        if key and self.limiter.enforces(key, pid):
            return False
        try:
            group = os.getpgid(pid)
        except OSError:
            return False  # gone already
        self.polled[inst] = group if group != os.getpgrp() else -pid  # -pid: not a group leader, own RSS only
        return True

    def kill_group(self, inst: Instance) -> None:
        """SIGKILL the process group of polled instance ``inst`` (when it leads its own group)."""
        group = self.polled.get(inst, 0)
        if group > 0:
            try:
                os.killpg(group, signal.SIGKILL)
            except OSError:
                pass

    def next_round(self) -> float:
        """s to wait before the next polling round: ``poll``, or more so that rounds take at
        most ``duty`` of one core."""
        return max(self.poll, self.last_round_s / self.duty if self.duty > 0 else 0.0)

    async def group_usage(self, limit_of: Callable[[Instance], int | None]) -> dict[Instance, float]:
        """One polling round: MB each polled instance's process group uses now (sum of RSS from
        one pass over ``/proc/*/stat``; for a forked instance over its limit — ``limit_of(inst)``
        MB — the private memory of the group's processes), kept in ``inst.peak_rss_mb``. Yields to the loop every
        ``SLICE`` processes; an instance whose group is gone is left out."""
        polled = dict(self.polled)
        groups: dict[int, list[int]] = {}
        for group in polled.values():
            groups.setdefault(abs(group), [])
        rss: dict[int, int] = {}  # pgid → RSS pages
        spent = 0.0
        began = time.thread_time()
        try:
            names = [e.name for e in os.scandir("/proc") if e.name.isdigit()]
        except OSError:
            names = []
        for i, name in enumerate(names):
            if i and i % SLICE == 0:
                spent += time.thread_time() - began
                await asyncio.sleep(0)
                began = time.thread_time()
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                fields = stat[stat.rindex(b")") + 2:].split()
                pgid = int(fields[2])
            except (OSError, ValueError, IndexError):
                continue
            members = groups.get(pgid)
            if members is not None:
                members.append(int(name))
                rss[pgid] = rss.get(pgid, 0) + int(fields[21])
        out: dict[Instance, float] = {}
        for inst, group in polled.items():
            pid = inst.pid
            if pid is None or inst not in self.polled:
                continue
            if group < 0:  # not its group's leader: its own RSS only
                used = rss_mb(pid)
                members = [pid]
            else:
                members = groups.get(group) or []
                used = rss[group] * PAGE / MB if group in rss and pid in members else None
            if used is None:
                continue
            memory = limit_of(inst)
            if memory and used > memory and hasattr(inst.process, "fork_ms"):
                # RSS counts the pages shared with the zygote; keep RSS when private memory is
                # unreadable (a non-dumpable instance of fnserve start, supervisor not root)
                private = [private_mb(m) for m in members]
                if all(p is not None for p in private):
                    used = sum(p or 0.0 for p in private)
            inst.peak_rss_mb = max(used, inst.peak_rss_mb or 0.0)
            out[inst] = used
        self.last_round_s = spent + time.thread_time() - began
        return out

    def release(self, inst: Instance) -> None:
        """``inst`` exited (or never started): stop polling it, free its cgroup (idempotent)."""
        self.polled.pop(inst, None)
        key = inst.limit_key
        if key and self._limiter is not None:
            self._limiter.release(key)
            inst.limit_key = None

    def classify_exit(self, inst: Instance) -> None:
        """After ``inst`` exited: was it the kernel enforcing its memory cgroup? Sets
        ``inst.kill_reason = "memory"`` and ``inst.peak_rss_mb`` then (idempotent)."""
        key, limiter = inst.limit_key, self._limiter
        if key and limiter is not None and inst.kill_reason is None and limiter.oom_killed(key):
            inst.kill_reason = "memory"
            peak = limiter.peak_mb(key)
            if peak is not None:
                inst.peak_rss_mb = max(peak, inst.peak_rss_mb or 0.0)

    def close(self) -> None:
        """Remove what the limiter created (cgroups)."""
        if self._limiter is not None:
            self._limiter.close()
