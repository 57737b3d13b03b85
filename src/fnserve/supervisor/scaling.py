"""How many instances a function runs: a pool snapshot and scaling strategies (SPEC §9).

A strategy is a ``ScalingPolicy`` subclass (STYLE habit 6: a small base class and a name map,
``POLICIES``) with one pure method a test can drive once::

    decision = policy.step(view)      # PoolView -> ScaleDecision(start=n, stop=(keys...))

The supervisor calls ``step`` when a request finds no free slot, when an instance becomes ready or
exits, when a request ends, and on a periodic tick (scale-down). It never decides anything itself.

- ``AutoscalePolicy`` ("autoscale", ``fnserve start``): ``ceil(demand / concurrency)`` instances,
  clamped to ``[min_instances, max_instances]``; ``demand`` = requests being served + queued.
  Instances idle for ``idle_timeout`` s stop, down to ``min_instances`` (0: scale to zero). Until
  the first instance reported its kind (ASGI or not: the concurrency depends on it) only one starts.
- ``SingleInstancePolicy`` ("single", ``fnserve dev``): one instance, started by the first request,
  unbounded concurrency and queue; stopped after ``idle_timeout`` s without a request (dev passes
  its ``dev_idle_timeout`` setting; default: never), the next request starts one again.

Limits are ``fnserve.config.FunctionLimits`` (the one limits type), from the ``WorkerTarget.limits``
of the function: a ``FunctionLimits``, or a callable ``kind -> FunctionLimits`` where ``kind`` is
the worker's reported kind (``"asgi"``, ``"wsgi"``, ``"handler"``, ``"lambda"``) or None before any
instance reported one, e.g. ``lambda kind: config.limits_for(fid, asgi=kind == "asgi")``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from ..config.effective import UNBOUNDED, FunctionLimits

__all__ = [
    "AutoscalePolicy", "InstanceView", "POLICIES", "PoolView", "ScaleDecision", "ScalingPolicy",
    "SingleInstancePolicy", "resolve_limits",
]


def resolve_limits(source: Any, kind: str | None) -> FunctionLimits | None:
    """The ``FunctionLimits`` of a ``WorkerTarget.limits`` value (see the module docstring):
    a ``FunctionLimits`` as is, a callable ``kind -> FunctionLimits`` called; None → None."""
    if source is None or isinstance(source, FunctionLimits):
        return source
    limits = source(kind)
    if not isinstance(limits, FunctionLimits):
        raise TypeError(f"WorkerTarget.limits returned {type(limits).__name__}, expected fnserve.config.FunctionLimits")
    return limits


@dataclass(frozen=True)
class InstanceView:
    """One instance in a ``PoolView``: ``key`` (stable id), ``load`` (slots held: requests in
    flight and passed direct-path connections), ``idle_for`` (s since its last request ended; None
    while busy), ``reclaimable`` (of ``load``: passed connections idle between requests, which a
    queued request gets back at once — supervisor.handoff's packet R — so they are no demand for
    another instance)."""

    key: int
    load: int
    idle_for: float | None
    reclaimable: int = 0


@dataclass(frozen=True)
class PoolView:
    """A snapshot of one function's pool. ``ready``: serving instances; ``starting``: instances
    being started; ``queued``: requests waiting for a slot; ``kind_known``: an instance reported
    its kind, so ``limits.concurrency`` is final."""

    function_id: str
    limits: FunctionLimits
    ready: tuple[InstanceView, ...]
    starting: int
    queued: int
    kind_known: bool = True


@dataclass(frozen=True)
class ScaleDecision:
    """``start``: instances to start now; ``stop``: keys of ready instances to stop (drained)."""

    start: int = 0
    stop: tuple[int, ...] = ()


class ScalingPolicy:
    """Strategy base. ``limits(configured)`` → the limits in force (a policy may override them,
    ``configured`` may be None); ``step(view)`` → what to do now. Pure: no I/O, no clock."""

    name = "base"

    def limits(self, configured: FunctionLimits | None) -> FunctionLimits:
        return configured or FunctionLimits()

    def step(self, view: PoolView) -> ScaleDecision:
        raise NotImplementedError


class AutoscalePolicy(ScalingPolicy):
    """Demand-driven scaling between ``min_instances`` and ``max_instances`` (module docstring)."""

    name = "autoscale"

    def step(self, view: PoolView) -> ScaleDecision:
        lim = view.limits
        demand = sum(i.load - i.reclaimable for i in view.ready) + view.queued
        needed = math.ceil(demand / lim.concurrency) if demand else 0
        desired = min(lim.max_instances, max(lim.min_instances, needed))
        have = len(view.ready) + view.starting
        if not view.kind_known:
            desired = min(desired, 1)  # concurrency unknown until the first instance reports its kind
        if desired > have:
            return ScaleDecision(start=desired - have)
        spare = have - desired
        idle = sorted(
            (i for i in view.ready if i.load == 0 and i.idle_for is not None and i.idle_for >= lim.idle_timeout),
            key=lambda i: -(i.idle_for or 0.0),
        )
        return ScaleDecision(stop=tuple(i.key for i in idle[:spare]))


class SingleInstancePolicy(AutoscalePolicy):
    """``fnserve dev``: one instance per function, lazily started, all requests go to it (the
    worker's own thread pool bounds sync kinds); ``max_duration`` / ``memory`` still apply.
    ``idle_timeout``: s without a request after which the instance stops (scale to zero; the
    next request starts one); ``math.inf`` (the default): never. Read at each ``limits`` call:
    a new value applies to pools whose limits are resolved again (a new target)."""

    name = "single"

    def __init__(self, idle_timeout: float = math.inf) -> None:
        self.idle_timeout = idle_timeout

    def limits(self, configured: FunctionLimits | None) -> FunctionLimits:
        if configured is None:
            return FunctionLimits(idle_timeout=self.idle_timeout)
        return dataclasses.replace(configured, concurrency=UNBOUNDED, min_instances=0, max_instances=1,
                                   idle_timeout=self.idle_timeout, queue_size=UNBOUNDED)


POLICIES: dict[str, type[ScalingPolicy]] = {
    AutoscalePolicy.name: AutoscalePolicy,
    SingleInstancePolicy.name: SingleInstancePolicy,
}
