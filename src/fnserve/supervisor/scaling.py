"""How many instances a function runs: limits, a pool snapshot, and scaling strategies (SPEC §9).

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
  unbounded concurrency and queue, never stopped for idleness (today's dev behaviour).

Limits come from the ``WorkerTarget.limits`` of the function: a ``fnserve.config.FunctionLimits``
(or any object with the same attributes), or a callable ``kind -> FunctionLimits`` where ``kind`` is
the worker's reported kind (``"asgi"``, ``"wsgi"``, ``"handler"``, ``"lambda"``) or None before any
instance reported one, e.g. ``lambda kind: config.limits_for(fid, asgi=kind == "asgi")``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

UNBOUNDED = 1 << 30

__all__ = [
    "AutoscalePolicy", "InstanceView", "Limits", "POLICIES", "PoolView", "ScaleDecision", "ScalingPolicy",
    "SingleInstancePolicy", "resolve_limits",
]


@dataclass(frozen=True)
class Limits:
    """What the supervisor enforces for one function. ``concurrency``: requests at once per
    instance; ``min_instances`` / ``max_instances``: ints; ``idle_timeout``: s; ``queue_size``:
    requests allowed to wait beyond the capacity of running and starting instances;
    ``max_duration``: s or None (no limit); ``memory``: MB or None (no limit)."""

    concurrency: int = UNBOUNDED
    min_instances: int = 0
    max_instances: int = 1
    idle_timeout: float = math.inf
    queue_size: int = UNBOUNDED
    max_duration: float | None = None
    memory: int | None = None


def resolve_limits(source: Any, kind: str | None) -> Limits | None:
    """``Limits`` from a ``WorkerTarget.limits`` value (see the module docstring); None → None."""
    if source is None:
        return None
    if callable(source) and not hasattr(source, "concurrency"):
        source = source(kind)
    if isinstance(source, Limits):
        return source
    max_duration = getattr(source, "max_duration", None)
    memory = getattr(source, "memory", None)
    return Limits(
        concurrency=max(1, int(getattr(source, "concurrency", UNBOUNDED))),
        min_instances=max(0, int(getattr(source, "min_instances", 0))),
        max_instances=max(1, int(getattr(source, "max_instances", 1))),
        idle_timeout=float(getattr(source, "idle_timeout", math.inf)),
        queue_size=max(0, int(getattr(source, "queue_size", UNBOUNDED))),
        max_duration=float(max_duration) if max_duration else None,
        memory=int(memory) if memory else None,
    )


@dataclass(frozen=True)
class InstanceView:
    """One instance in a ``PoolView``: ``key`` (stable id), ``load`` (requests in flight),
    ``idle_for`` (s since its last request ended; None while busy)."""

    key: int
    load: int
    idle_for: float | None


@dataclass(frozen=True)
class PoolView:
    """A snapshot of one function's pool. ``ready``: serving instances; ``starting``: instances
    being started; ``queued``: requests waiting for a slot; ``kind_known``: an instance reported
    its kind, so ``limits.concurrency`` is final."""

    function_id: str
    limits: Limits
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

    def limits(self, configured: Limits | None) -> Limits:
        return configured or Limits()

    def step(self, view: PoolView) -> ScaleDecision:
        raise NotImplementedError


class AutoscalePolicy(ScalingPolicy):
    """Demand-driven scaling between ``min_instances`` and ``max_instances`` (module docstring)."""

    name = "autoscale"

    def step(self, view: PoolView) -> ScaleDecision:
        lim = view.limits
        demand = sum(i.load for i in view.ready) + view.queued
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
    worker's own thread pool bounds sync kinds); ``max_duration`` / ``memory`` still apply."""

    name = "single"

    def limits(self, configured: Limits | None) -> Limits:
        base = configured or Limits()
        return Limits(max_duration=base.max_duration, memory=base.memory)


POLICIES: dict[str, type[ScalingPolicy]] = {
    AutoscalePolicy.name: AutoscalePolicy,
    SingleInstancePolicy.name: SingleInstancePolicy,
}
