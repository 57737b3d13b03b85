"""The supervisor's watch over running instances: exits (why, logged with the function and the
peak memory), the memory limiter, and the one maintenance loop (RSS polling every
``memory_poll`` s, heartbeat watchdog, scaling ticks every ``tick`` s). Mixed into ``Supervisor``.

Memory polled: RSS (``/proc/<pid>/statm``); for a forked instance over its limit by RSS, its
private memory (``smaps_rollup``) decides, since its RSS also counts the pages it shares with its
zygote (charged to the zygote, not to the instance's cgroup)."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .instance import Instance
from .limits import MemoryLimiter, detect_memory_limiter, private_mb, rss_mb
from .pool import FunctionPool

log = logging.getLogger("fnserve.supervisor")


class Watch:
    """``Supervisor`` methods watching instances (see the module docstring)."""

    _pools: dict[str, FunctionPool]
    _live: set[Instance]
    _closing: bool
    _memory: MemoryLimiter | None
    _memory_choice: Any
    memory_poll: float
    tick: float
    heartbeat_timeout: float | None

    def _memory_limiter(self) -> MemoryLimiter:
        if self._memory is None:
            self._memory = detect_memory_limiter(str(self._memory_choice))
        return self._memory

    def _release_limit(self, inst: Instance) -> None:
        key = getattr(inst, "limit_key", None)
        if key and self._memory is not None:
            self._memory.release(key)
            inst.limit_key = None  # type: ignore[attr-defined]

    def _classify_exit(self, inst: Instance) -> None:
        """After ``inst`` exited: was it the kernel enforcing its memory cgroup? (idempotent)"""
        key = getattr(inst, "limit_key", None)
        if key and self._memory is not None and inst.kill_reason is None and self._memory.oom_killed(key):
            inst.kill_reason = "memory"
            peak = self._memory.peak_mb(key)
            if peak is not None:
                inst.peak_rss_mb = max(peak, inst.peak_rss_mb or 0.0)

    def _on_exit(self, inst: Instance) -> None:
        self._live.discard(inst)
        status = inst.exited.result()
        self._classify_exit(inst)
        self._release_limit(inst)
        pool = self._pools.get(inst.target.id)
        if pool is not None and inst in pool.instances:
            pool.instances.remove(inst)
            if not self._closing:
                how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
                if inst.kill_reason == "memory":
                    peak = f"{inst.peak_rss_mb:.0f} MB" if inst.peak_rss_mb is not None else "unknown"
                    log.error(
                        "%s: worker %s went over its memory limit of %s MB (peak %s) and %s; its in-flight "
                        "requests failed (502); replacing it", inst.target.id, inst.pid, pool.limits.memory, peak, how,
                    )
                elif inst.kill_reason is None:
                    log.warning(
                        "%s: worker %s %s; its in-flight requests failed (502); the next request starts a new one",
                        inst.target.id, inst.pid, how,
                    )
                self._step(pool)  # type: ignore[attr-defined]

    async def _maintain(self) -> None:
        """The one background loop: RSS polling every ``memory_poll`` s, heartbeat watchdog and
        scaling steps (idle scale-down, ``min_instances``) every ``tick`` s."""
        loop = asyncio.get_running_loop()
        interval = max(0.01, min(self.memory_poll, self.tick))
        next_tick = loop.time()
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            for inst in list(self._live):
                if inst.state != "ready" or inst.pid is None:
                    continue
                pool = self._pools.get(inst.target.id) if inst.target.limits is not None else None
                memory = pool.limits.memory if pool is not None else None
                if memory:
                    used = rss_mb(inst.pid)
                    if used is not None and used > memory and hasattr(inst.process, "fork_ms"):
                        # forked: RSS counts the pages shared with the zygote; its own are the private ones
                        used = private_mb(inst.pid)
                    if used is not None:
                        inst.peak_rss_mb = max(used, inst.peak_rss_mb or 0.0)
                        if used > memory:
                            log.error("%s: worker %s uses %.0f MB, over its memory limit of %s MB; killing it",
                                      inst.target.id, inst.pid, used, memory)
                            inst.kill("memory")
                            continue
                if self.heartbeat_timeout and now - inst.last_heartbeat > self.heartbeat_timeout:
                    log.error(
                        "%s: worker %s sent no heartbeat for %.1f s (its event loop is blocked); killing it",
                        inst.target.id, inst.pid, now - inst.last_heartbeat,
                    )
                    inst.kill("heartbeat")
            if now >= next_tick:
                next_tick = now + self.tick
                for pool in list(self._pools.values()):
                    self._step(pool)  # type: ignore[attr-defined]
