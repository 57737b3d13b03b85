"""One function's instances, its request queue and the leases requests hold (SPEC §9)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any

from .instance import Instance
from .scaling import InstanceView, Limits, PoolView, ScalingPolicy, resolve_limits
from .target import WorkerTarget


class Lease:
    """A request's slot on one instance, from ``Supervisor.lease``; release it when the request
    ends (``async with`` does). ``connection``: give it to ``upstream.forward``; ``instance``:
    the ``Instance`` (``.pid``); ``cold``: True for the first request of a freshly started
    instance; ``waited_ms``: time spent queued or waiting for a cold start (ms); ``expired``: set
    when the request ran past ``max_duration`` and its instance was killed."""

    __slots__ = ("instance", "connection", "cold", "waited_ms", "expired", "_release")

    def __init__(self, instance: Instance, cold: bool, waited_ms: float, release: Callable[[Lease], None]) -> None:
        self.instance = instance
        self.connection = instance.conn
        self.cold = cold
        self.waited_ms = waited_ms
        self.expired = False
        self._release: Callable[[Lease], None] | None = release

    def release(self) -> None:
        """Give the slot back (idempotent)."""
        release, self._release = self._release, None
        if release is not None:
            release(self)

    async def __aenter__(self) -> Lease:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()


class FunctionPool:
    """The instances of one function, the requests waiting for a slot (``waiters``: futures
    resolved with an ``Instance`` whose lease count already includes them), the starts under way
    (``starting``: tasks) and a remembered load error. ``limits``: the limits in force (the
    policy's view of ``target.limits`` for the reported kind)."""

    def __init__(self, target: WorkerTarget, policy: ScalingPolicy) -> None:
        self.target = target
        self.policy = policy
        self.instances: list[Instance] = []
        self.starting: set[asyncio.Task] = set()
        self.waiters: deque[asyncio.Future] = deque()
        self.load_error: Any = None
        self.spawn_count = 0
        self.generation = 0
        self.kind: str | None = None
        self.cold_starts = 0
        self._limits: tuple[Any, str | None, Limits] | None = None

    @property
    def limits(self) -> Limits:
        cached = self._limits
        if cached is None or cached[0] is not self.target.limits or cached[1] != self.kind:
            limits = self.policy.limits(resolve_limits(self.target.limits, self.kind))
            self._limits = cached = (self.target.limits, self.kind, limits)
        return cached[2]

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

    def view(self, now: float, extra_queued: int = 0) -> PoolView:
        ready = []
        for inst in self.instances:
            if not inst.usable:
                continue
            load = inst.load
            if load:
                inst.idle_since = None
            elif inst.idle_since is None:
                inst.idle_since = now
            ready.append(InstanceView(inst.key, load, None if load else now - inst.idle_since))
        queued = sum(1 for w in self.waiters if not w.done()) + extra_queued
        return PoolView(self.target.id, self.limits, tuple(ready), len(self.starting), queued, self.kind is not None)

    def fail_waiters(self, exc: BaseException) -> None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(exc)
