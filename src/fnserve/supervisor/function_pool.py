"""One function's instances, its request queue and the leases requests hold (SPEC §9).

``FunctionPool`` is the state of one function (instances, starts under way, waiters, load
error) with the slot accounting every request goes through: ``free`` (a slot now?), ``grant``
(take it), ``Lease.release`` (give it back and hand it to the oldest waiter: ``feed``).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from typing import Any

from ..config.effective import FunctionLimits
from ..runtime import protocol as p
from .instance import Instance
from .scaling import InstanceView, PoolView, ScalingPolicy, resolve_limits
from .target import WorkerTarget


class Lease:
    """A request's slot on one instance, from ``Supervisor.lease``; release it when the request
    ends (``async with`` does). ``connection``: give it to ``upstream.forward``; ``instance``:
    the ``Instance`` (``.pid``); ``cold``: True for the first request of a freshly started
    instance; ``waited_ms``: time spent queued or waiting for a cold start (ms); ``expired``: set
    when the request ran past ``max_duration`` and its instance was killed; ``deadline``: loop
    time (s) it expires at while ``serve`` watches it, else None."""

    __slots__ = ("instance", "connection", "cold", "waited_ms", "expired", "deadline", "_pool")

    def __init__(self, pool: FunctionPool, instance: Instance, cold: bool, waited_ms: float) -> None:
        self.instance = instance
        # only ready instances get leases, and a ready instance has its connection
        self.connection: p.Connection = instance.conn  # type: ignore[assignment]
        self.cold = cold
        self.waited_ms = waited_ms
        self.expired = False
        self.deadline: float | None = None
        self._pool: FunctionPool | None = pool

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.release(self)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class FunctionPool:
    """The instances of one function, the requests waiting for a slot (``waiters``: futures
    resolved with an ``Instance`` whose lease count already includes them), the starts under way
    (``starting``: tasks) and a remembered load error (``load_error``; ``load_failures``: failed
    loads in a row; ``retry_at``: loop time the next load retry is due, None: never). ``limits``: the ``FunctionLimits`` in
    force (the policy's view of ``target.limits`` for the reported kind)."""

    def __init__(self, target: WorkerTarget, policy: ScalingPolicy) -> None:
        self.target = target
        self.policy = policy
        self.instances: list[Instance] = []
        self.starting: set[asyncio.Task[Instance | None]] = set()
        self.waiters: deque[asyncio.Future[Instance]] = deque()
        self.load_error: Any = None
        self.load_failures = 0  # consecutive failed loads (reset by a successful one)
        self.load_failures_total = 0
        self.retry_at: float | None = None  # loop time (s) the next load retry is due, None: never
        self.spawn_count = 0
        self.generation = 0
        self.kind: str | None = None
        self.cold_starts = 0
        self.due = math.inf  # loop time (s) of its next maintenance scaling step (``InstancePools.tick``)
        self.replaced: dict[str, int] = {}  # reason ("max_requests", "failures", "heartbeat") → instances replaced
        self._limits: tuple[Any, str | None, FunctionLimits] | None = None

    @property
    def limits(self) -> FunctionLimits:
        cached = self._limits
        if cached is None or cached[0] is not self.target.limits or cached[1] != self.kind:
            limits = self.policy.limits(resolve_limits(self.target.limits, self.kind))
            self._limits = cached = (self.target.limits, self.kind, limits)
        return cached[2]

    @property
    def queued(self) -> int:
        """Requests waiting for a slot."""
        return sum(1 for w in self.waiters if not w.done())

    def pick(self) -> Instance | None:
        """The least busy usable instance (any load)."""
        best = None
        for inst in self.instances:
            if inst.usable and (best is None or inst.load < best.load):
                best = inst
        return best

    def free(self) -> Instance | None:
        """The least busy usable instance with a free slot (load below ``concurrency``), or None."""
        best = self.pick()
        return best if best is not None and best.load < self.limits.concurrency else None

    # ------------------------------------------------------------------------- slots
    def grant(self, inst: Instance, waited_ms: float = 0.0, *, count: bool = True) -> Lease:
        """Take a slot on ``inst`` (one ``free`` returned) now. ``count``: the slot is one request
        (``inst.served`` + 1); False for a direct-path connection, whose requests the worker
        reports (``handoff``)."""
        inst.leases += 1
        return self.lease(inst, waited_ms, count)

    def lease(self, inst: Instance, waited_ms: float, count: bool = True) -> Lease:
        """The ``Lease`` of a slot already counted in ``inst.leases`` (granted or fed)."""
        cold = inst.served == 0
        if count:
            inst.served += 1
        inst.idle_since = None
        return Lease(self, inst, cold, waited_ms)

    def release(self, lease: Lease) -> None:
        """A request ended: its slot goes to the oldest waiter, if any."""
        inst = lease.instance
        inst.leases -= 1
        if inst.leases <= 0 and inst.load == 0:
            inst.idle_since = asyncio.get_running_loop().time()
        if self.waiters:
            self.feed()

    def feed(self) -> None:
        """Hand free slots to waiters, oldest first."""
        waiters = self.waiters
        while waiters:
            if waiters[0].done():
                waiters.popleft()
                continue
            inst = self.free()
            if inst is None:
                return
            inst.leases += 1
            waiters.popleft().set_result(inst)

    def fail_waiters(self, exc: BaseException) -> None:
        """Every waiting request fails with ``exc``."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)

    # ------------------------------------------------------------------------- scaling
    def view(self, now: float, extra_queued: int = 0) -> PoolView:
        """The ``PoolView`` the scaling policy decides on (``now``: loop time, s)."""
        ready = []
        for inst in self.instances:
            if not inst.usable:
                continue
            load = inst.load
            if load:
                inst.idle_since = None
                ready.append(InstanceView(inst.key, load, None, inst.idle_direct))
            else:
                if inst.idle_since is None:
                    inst.idle_since = now
                ready.append(InstanceView(inst.key, load, now - inst.idle_since))
        return PoolView(self.target.id, self.limits, tuple(ready), len(self.starting), self.queued + extra_queued,
                        self.kind is not None)
