"""The supervisor's one background loop (``Maintenance``): RSS polling against ``memory`` every
``memory_poll`` s, the heartbeat watchdog, and scaling steps (idle scale-down, ``min_instances``)
every ``tick`` s. ``step(now)`` is one pass, which a test can drive alone.
"""

from __future__ import annotations

import asyncio
import logging

from .memory import MemoryGuard
from .pools import InstancePools

log = logging.getLogger("fnserve.supervisor")


class Maintenance:
    """Periodic work over ``pools``' live instances. ``memory``: measures instances;
    ``memory_poll`` / ``tick``: s; ``heartbeat_timeout``: SIGKILL an instance silent for that
    many s (None: never)."""

    def __init__(self, pools: InstancePools, memory: MemoryGuard, *, memory_poll: float, tick: float,
                 heartbeat_timeout: float | None) -> None:
        self.pools = pools
        self.memory = memory
        self.memory_poll = memory_poll
        self.tick = tick
        self.heartbeat_timeout = heartbeat_timeout
        self._task: asyncio.Task[None] | None = None
        self._next_tick = 0.0

    def start(self) -> None:
        """Run the loop in a task (idempotent)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = max(0.01, min(self.memory_poll, self.tick))
        self._next_tick = loop.time()
        while True:
            await asyncio.sleep(interval)
            self.step(loop.time())

    def step(self, now: float) -> None:
        """One pass at loop time ``now`` (s): kill instances over their memory limit or silent
        past ``heartbeat_timeout``; every ``tick`` s, a scaling step for every function."""
        pools = self.pools.pools
        for inst in list(self.pools.live):
            if inst.state != "ready" or inst.pid is None:
                continue
            pool = pools.get(inst.target.id) if inst.target.limits is not None else None
            memory = pool.limits.memory if pool is not None else None
            if memory:
                used = self.memory.measure(inst, memory)
                if used is not None and used > memory:
                    log.error("%s: worker %s uses %.0f MB, over its memory limit of %s MB; killing it",
                              inst.target.id, inst.pid, used, memory)
                    inst.kill("memory")
                    continue
            if self.heartbeat_timeout and now - inst.last_heartbeat > self.heartbeat_timeout:
                inst.silent_s = now - inst.last_heartbeat
                log.error(
                    "%s: worker %s sent no heartbeat for %.1f s, over heartbeat_timeout (%g s): its event loop is "
                    "blocked (one long call?); killing it, its in-flight requests get 502 "
                    "(raise --heartbeat-timeout if the function blocks that long on purpose)",
                    inst.target.id, inst.pid, inst.silent_s, self.heartbeat_timeout,
                )
                inst.kill("heartbeat")
        if now >= self._next_tick:
            self._next_tick = now + self.tick
            for pool in list(pools.values()):
                self.pools.step(pool)
