"""The ``memory`` limit of instances (SPEC §5 ``memory`` MB, §9), one ``MemoryGuard`` per supervisor.

It wraps the ``MemoryLimiter`` strategy (``limits``: cgroup v2 / v1 or ``RLIMIT_AS``, detected
when an instance first needs a limit) and keeps the per-instance bookkeeping: the worker options
of a new instance, the spare cgroup a zygote's standby joined ahead of time, why an instance
exited (the kernel's OOM kill in its cgroup), and the RSS check the maintenance loop runs.

Memory polled: RSS (``/proc/<pid>/statm``); for a forked instance over its limit by RSS, its
private memory (``smaps_rollup``) decides, since its RSS also counts the pages it shares with its
zygote (charged to the zygote, not to the instance's cgroup).
"""

from __future__ import annotations

from typing import Any

from .instance import Instance
from .limits import MemoryLimiter, detect_memory_limiter, private_mb, rss_mb


class MemoryGuard:
    """Memory limits of instances. ``choice``: a ``MemoryLimiter`` or its name for
    ``detect_memory_limiter`` ("auto", "cgroup2", "cgroup1", "rlimit", "none")."""

    def __init__(self, choice: MemoryLimiter | str = "auto") -> None:
        self._choice = choice
        self._limiter: MemoryLimiter | None = choice if isinstance(choice, MemoryLimiter) else None

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
        now, ~1 ms after the fork; RSS polling covers that window). Spares the zygote will not use,
        or that a spawn fallback ignored, are removed."""
        limiter = self.limiter
        if spare and not hasattr(process, "discarded"):
            limiter.discard(spare)  # not forked by a zygote
        for procs in getattr(process, "discarded", ()):
            limiter.discard(procs)
        cgroup = getattr(process, "cgroup", None)
        if cgroup:
            limiter.adopt(cgroup, inst.token, memory)

    def release(self, inst: Instance) -> None:
        """``inst`` exited (or never started): free its cgroup (idempotent)."""
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

    @staticmethod
    def measure(inst: Instance, memory: int) -> float | None:
        """MB ``inst`` uses now (RSS; private memory for a forked instance whose RSS is over
        ``memory``), also kept in ``inst.peak_rss_mb``; None if it is gone."""
        if inst.pid is None:
            return None
        used = rss_mb(inst.pid)
        if used is not None and used > memory and hasattr(inst.process, "fork_ms"):
            # forked: RSS counts the pages shared with the zygote; RSS when private memory is
            # unreadable (a non-dumpable instance of fnserve start, supervisor not root)
            used = private_mb(inst.pid) or used
        if used is not None:
            inst.peak_rss_mb = max(used, inst.peak_rss_mb or 0.0)
        return used

    def close(self) -> None:
        """Remove what the limiter created (cgroups)."""
        if self._limiter is not None:
            self._limiter.close()
