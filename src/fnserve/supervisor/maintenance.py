"""The supervisor's background work (``Maintenance``), with costs flat in the number of functions
(issue 14 item 3):

- ``step(now)``, every ``tick`` s: the heartbeat watchdog (one comparison per live instance, run
  every ``watchdog`` s: ``min(1 s, heartbeat_timeout / 10)``), and scaling steps only for the
  pools whose next step is due (``InstancePools.tick``: idle scale-down, load retries,
  ``min_instances``) — nothing for functions with no instance. One pass a test can drive alone;
- ``memory_round()``, in its own task: one RSS pass over ``/proc`` for the instances whose
  memory limit the kernel does not hold (``MemoryGuard.polled``: no cgroup), every
  ``MemoryGuard.next_round()`` s, killing those over their limit. With a cgroup nothing is polled.
"""

from __future__ import annotations

import asyncio
import logging

from .instance import Instance
from .memory import MemoryGuard
from .pools import InstancePools

log = logging.getLogger("fnserve.supervisor")


class Maintenance:
    """Periodic work over ``pools``' live instances. ``memory``: the ``MemoryGuard`` (its
    ``poll`` is ``memory_poll`` s); ``tick``: s between scaling passes; ``heartbeat_timeout``:
    SIGKILL an instance silent for that many s (None: never)."""

    def __init__(self, pools: InstancePools, memory: MemoryGuard, *, memory_poll: float, tick: float,
                 heartbeat_timeout: float | None) -> None:
        self.pools = pools
        self.memory = memory
        memory.poll = memory_poll
        self.tick = tick
        self.heartbeat_timeout = heartbeat_timeout
        self.watchdog = min(1.0, heartbeat_timeout / 10) if heartbeat_timeout else 0.0
        self._tasks: list[asyncio.Task[None]] = []
        self._next_tick = 0.0
        self._next_watch = 0.0

    def start(self) -> None:
        """Run the loops in tasks (idempotent)."""
        if not self._tasks:
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._run()), loop.create_task(self._memory())]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = max(0.01, min(self.tick, self.watchdog) if self.watchdog else self.tick)
        self._next_tick = self._next_watch = loop.time()
        while True:
            await asyncio.sleep(interval)
            self.step(loop.time())

    async def _memory(self) -> None:
        while True:
            await asyncio.sleep(self.memory.next_round())
            if self.memory.polled:
                await self.memory_round()

    def step(self, now: float) -> None:
        """One pass at loop time ``now`` (s): kill instances silent past ``heartbeat_timeout``
        (every ``watchdog`` s); every ``tick`` s, the scaling steps that are due."""
        if self.heartbeat_timeout and now >= self._next_watch:
            self._next_watch = now + self.watchdog
            timeout = self.heartbeat_timeout
            for inst in [i for i in self.pools.live if now - i.last_heartbeat > timeout]:
                if inst.state != "ready" or inst.pid is None:
                    continue
                inst.silent_s = now - inst.last_heartbeat
                log.error(
                    "%s: worker %s sent no heartbeat for %.1f s, over heartbeat_timeout (%g s): its event loop is "
                    "blocked (one long call?); killing it, its in-flight requests get 502 "
                    "(raise --heartbeat-timeout if the function blocks that long on purpose)",
                    inst.target.id, inst.pid, inst.silent_s, timeout,
                )
                inst.kill("heartbeat")
        if now >= self._next_tick:
            self._next_tick = now + self.tick
            self.pools.tick(now)

    def _limit_of(self, inst: Instance) -> int | None:
        pool = self.pools.pools.get(inst.target.id)
        return pool.limits.memory if pool is not None and inst.target.limits is not None else None

    async def memory_round(self) -> list[Instance]:
        """One polling round (``MemoryGuard.group_usage``): SIGKILL each ready instance whose
        process group uses more than its ``memory`` MB. Returns the instances killed."""
        killed = []
        for inst, used in (await self.memory.group_usage(self._limit_of)).items():
            memory = self._limit_of(inst)
            if not memory or used <= memory or inst.state != "ready" or inst.exited.done():
                continue
            log.error("%s: worker %s uses %.0f MB (with the processes it started), over its memory limit of %s MB; "
                      "killing it", inst.target.id, inst.pid, used, memory)
            self.memory.kill_group(inst)  # the processes it forked hold the memory too
            inst.kill("memory")
            killed.append(inst)
        return killed
