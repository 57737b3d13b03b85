"""The instances of every function: one ``FunctionPool`` per function, and starting, admitting,
retiring, replacing and removing instances (SPEC §9).

- ``step(pool)`` asks the pool's ``ScalingPolicy`` what to do now and does it (start instances,
  retire idle ones); it runs when a request finds no free slot, when an instance becomes ready or
  exits, and on the maintenance tick;
- a crashed instance is dropped (its in-flight requests fail with ``WorkerCrashed``, 502) and the
  next request starts a new one;
- an instance that failed to LOAD (``LOAD_ERROR`` frame, or exit before READY) is not respawned
  at once: the ``LoadError`` is kept and ``FunctionLoadFailed`` raised for requests. With
  ``load_retry`` (``fnserve start``: seconds, the longest wait between attempts) the load is
  retried after 1, 2, 4, ... s (capped at ``load_retry``), by the first request after that time
  or by the maintenance tick (``retry_due`` / ``retry``), as Lambda retries a failed
  initialisation; a success clears the error. Without it (``fnserve dev``) the function waits for
  ``restart([id])`` (a file changed) or ``update`` with a changed target;
- ``restart(ids)``: new requests wait for a new instance while the old ones finish their
  in-flight requests and stop (zero failed requests across a reload).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import secrets
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import FunctionLoadFailed, WorkerError, WorkerStartTimeout
from ..project.types import Function
from ..runtime import protocol as p
from .function_pool import FunctionPool
from .instance import Instance, LoadFailure
from .memory import MemoryGuard
from .scaling import PoolView, ScaleDecision, ScalingPolicy
from .starter import InstanceStarter
from .target import WorkerTarget

log = logging.getLogger("fnserve.supervisor")


@dataclass
class RestartResult:
    """What ``restart`` did for one function: ``ready_ms`` of the new instance (None when no
    instance was started: the function was idle), or ``error`` (the ``LoadError``) if it failed."""

    id: str
    ready_ms: float | None = None
    error: Any = None


class InstancePools:
    """Every function's ``FunctionPool`` (``pools``: id → pool) and every live instance (``live``).
    ``starter`` launches processes; ``memory`` classifies and releases exits; ``start_timeout``:
    s an instance gets to become ready; ``stop_timeout``: s a retired instance gets to finish;
    ``ensure_started``: awaited before each launch (the supervisor's idempotent ``start``);
    ``load_retry``: s, the longest backoff between load retries (None or 0: never retry);
    ``max_requests`` (+ a random 0..``max_requests_jitter``): requests an instance serves before it
    is replaced, 0: never; ``max_failures``: failed requests in a row before it is, 0: never."""

    def __init__(self, targets: Iterable[WorkerTarget], policy: ScalingPolicy, starter: InstanceStarter,
                 memory: MemoryGuard, *, start_timeout: float, stop_timeout: float,
                 ensure_started: Callable[[], Awaitable[None]], load_retry: float | None = None,
                 max_requests: int = 0, max_requests_jitter: int = 0, max_failures: int = 0) -> None:
        self.ensure_started = ensure_started
        self.policy = policy
        self.starter = starter
        self.memory = memory
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.load_retry = load_retry or None
        self.max_requests = max_requests
        self.max_requests_jitter = max_requests_jitter
        self.max_failures = max_failures
        self.pools: dict[str, FunctionPool] = {t.id: FunctionPool(t, policy) for t in targets}
        self.live: set[Instance] = set()
        self.failed: set[FunctionPool] = set()  # pools whose last load failed (readiness reads only these)
        self.ticking: set[FunctionPool] = set()  # pools with a scaling step due (``FunctionPool.due``)
        self.recheck = 0.25  # s: a pool with a busy instance (or below min_instances) is stepped again after it
        self.closing = False
        self._background: set[asyncio.Task[Any]] = set()

    def get(self, function: Function | str) -> FunctionPool:
        """The pool of ``function`` (a ``Function`` or its id). Raises ``WorkerError`` if unknown."""
        pool = self.pools.get(function if isinstance(function, str) else function.id)
        if pool is None:
            fid = function if isinstance(function, str) else function.id
            raise WorkerError(f"no function {fid!r} is known to the supervisor", "call update() with the project's functions")
        return pool

    def background(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` as a task kept until done (awaited, bounded, by ``close``)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def warm(self, pools: Iterable[FunctionPool]) -> None:
        """Prepare the launcher (zygotes) and take a scaling step (``min_instances``) for ``pools``."""
        for pool in pools:
            self.background(self.starter.prepare(pool.target))
            self.step(pool)

    # ----------------------------------------------------------------------------- load retries
    def retry_due(self, pool: FunctionPool) -> bool:
        """True when ``pool``'s function failed to load, no attempt is under way and its next
        retry is due (never without ``load_retry``)."""
        return (pool.load_error is not None and pool.retry_at is not None and not pool.starting
                and not self.closing and asyncio.get_running_loop().time() >= pool.retry_at)

    def retry(self, pool: FunctionPool) -> asyncio.Task[Instance | None]:
        """Try loading ``pool``'s function again (one instance); logged once per attempt. The
        error stays until an instance is ready (requests arriving meanwhile wait for it)."""
        pool.retry_at = None
        log.warning("%s: retrying its load (attempt %d; it failed %d time(s) in a row)",
                    pool.target.id, pool.load_failures + 1, pool.load_failures)
        return self.spawn(pool)

    def _load_failed(self, pool: FunctionPool, load_error: Any) -> None:
        """Remember a failed load, schedule the next retry, log it (the traceback when it is
        new, one line when it repeats the previous one)."""
        previous = pool.load_error
        pool.load_error = load_error
        self.failed.add(pool)
        pool.load_failures += 1
        pool.load_failures_total += 1
        message = getattr(load_error, "message", load_error)
        retry = ""
        if self.load_retry:
            delay = min(self.load_retry, 2.0 ** min(pool.load_failures - 1, 30))
            pool.retry_at = asyncio.get_running_loop().time() + delay
            self._schedule(pool, pool.retry_at)  # the maintenance tick retries it then, without traffic
            retry = f"; retrying in {delay:g} s"
        if previous is not None and getattr(previous, "traceback", None) == getattr(load_error, "traceback", None):
            log.error("%s failed to load again (%d in a row): %s%s", pool.target.id, pool.load_failures, message, retry)
        else:
            log.error("%s failed to load: %s%s\n%s", pool.target.id, message, retry,
                      getattr(load_error, "traceback", ""))

    # ----------------------------------------------------------------------------- scaling
    def step(self, pool: FunctionPool, extra: int = 0) -> None:
        """Ask the policy what to do now and do it (start instances, retire idle ones); ``extra``:
        requests about to queue. A function whose load failed gets its load retry when due instead."""
        if self.closing or self.pools.get(pool.target.id) is not pool:
            self.ticking.discard(pool)
            return
        if pool.load_error is not None:
            if self.retry_due(pool):  # failed loads heal on the maintenance tick, without traffic
                self.retry(pool)
            self._schedule(pool, math.inf if pool.retry_at is None else pool.retry_at)
            return
        now = asyncio.get_running_loop().time()
        view = pool.view(now, extra)
        decision = pool.policy.step(view)
        for _ in range(decision.start):
            self.spawn(pool)
        if decision.stop:
            stop = set(decision.stop)
            for inst in [i for i in pool.instances if i.key in stop]:
                pool.instances.remove(inst)
                log.info("%s: stopping idle worker %s (idle for more than %g s)",
                         pool.target.id, inst.pid, pool.limits.idle_timeout)
                self.retire(inst)
        self._schedule(pool, self._next_step(view, decision, now))

    def _next_step(self, view: PoolView, decision: ScaleDecision, now: float) -> float:
        """Loop time (s) ``pool`` needs its next scaling step at if nothing happens meanwhile
        (events — a request without a slot, an instance ready or gone — step it earlier): when its
        first idle instance reaches ``idle_timeout``; ``recheck`` s from now while an instance is
        busy (its idle time starts when its last request ends), a start is under way or wanted, or
        ``min_instances`` is set; never (inf) for a pool with no instance and nothing to do."""
        lim = view.limits
        recheck = now + self.recheck
        due = recheck if decision.start or view.starting or view.queued or lim.min_instances else math.inf
        stopped = set(decision.stop)
        for inst in view.ready:
            if inst.key in stopped:
                continue
            if inst.idle_for is None:
                due = min(due, recheck)
            else:  # past its idle_timeout but kept (demand or min_instances): looked at again later
                at = now + lim.idle_timeout - inst.idle_for
                due = min(due, at if at > now else recheck)
        return due

    def _schedule(self, pool: FunctionPool, due: float) -> None:
        """Keep ``pool`` in ``ticking`` (the maintenance tick steps it once ``due`` passed) or drop it."""
        pool.due = due
        if due == math.inf:
            self.ticking.discard(pool)
        else:
            self.ticking.add(pool)

    def tick(self, now: float) -> None:
        """The maintenance tick: a scaling step for the pools whose ``due`` time passed — O(pools
        with live instances or pending retries), nothing for idle functions."""
        for pool in [due for due in self.ticking if due.due <= now]:
            self.step(pool)

    def spawn(self, pool: FunctionPool) -> asyncio.Task[Instance | None]:
        """Start one instance of ``pool``'s function in a task (counted in ``pool.starting``)."""
        task = asyncio.get_running_loop().create_task(self._start(pool))
        pool.starting.add(task)
        task.add_done_callback(functools.partial(self._started, pool))
        return task

    def _started(self, pool: FunctionPool, task: asyncio.Task[Instance | None]) -> None:
        pool.starting.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None and not pool.starting and pool.pick() is None:
            if isinstance(error, WorkerError):
                pool.fail_waiters(error)
            else:
                pool.fail_waiters(WorkerError(f"{pool.target.id}: could not start a worker: {error}", None))
        if not self.closing and self.pools.get(pool.target.id) is pool:
            pool.feed()
            if error is None or pool.pick() is not None:
                self.step(pool)

    # ----------------------------------------------------------------------------- one instance
    async def _start(self, pool: FunctionPool) -> Instance | None:
        """Start one instance of ``pool``'s function and add it to the pool when ready."""
        generation = pool.generation
        try:
            inst = await self._launch(pool, lambda inst: self._admit(pool, inst, generation))
        except LoadFailure as exc:
            if pool.generation == generation:
                self._load_failed(pool, exc.load_error)
                error = FunctionLoadFailed(pool.target.id, exc.load_error)
                pool.fail_waiters(error)
                raise error from None
            return None
        if not self._admit(pool, inst, generation):
            self.retire(inst)  # superseded while starting
            return None
        return inst

    def _admit(self, pool: FunctionPool, inst: Instance, generation: int) -> bool:
        """Add a ready instance to its pool and hand it waiting requests at once (called as its
        READY arrives, before the start task resumes). False if it was superseded meanwhile."""
        if pool.generation != generation or self.closing or self.pools.get(pool.target.id) is not pool:
            return False
        if inst not in pool.instances:
            if inst.exited.done() or inst.conn is None or inst.conn.closed:
                return False
            pool.instances.append(inst)
            pool.cold_starts += 1
            self.failed.discard(pool)
            if pool.load_error is not None:
                log.warning("%s: loaded after %d failed attempt(s); serving again", pool.target.id, pool.load_failures)
            pool.load_error, pool.load_failures, pool.retry_at = None, 0, None
            if pool.kind is None:
                pool.kind = inst.kind
            pool.feed()
        return True

    async def _launch(self, pool: FunctionPool, on_ready: Any = None) -> Instance:
        await self.ensure_started()
        target = pool.target
        inst = Instance(target, secrets.token_hex(8))
        if self.max_requests:
            inst.recycle_at = self.max_requests + random.randint(0, self.max_requests_jitter)
        pool.spawn_count += 1
        inst.on_imported = lambda names, target=target: self._learn(target, names)
        inst.on_ready = on_ready
        starter = self.starter
        try:
            await starter.start(inst, pool.limits.memory)
            self.live.add(inst)
            inst.exited.add_done_callback(functools.partial(self._on_exit, inst))
            try:
                meta = await asyncio.wait_for(asyncio.shield(inst.ready), self.start_timeout)
            except asyncio.TimeoutError:
                inst.kill()
                raise WorkerStartTimeout(target.id, self.start_timeout) from None
            except BaseException:
                if not inst.ready.done() or inst.ready.exception() is None:
                    inst.kill()  # cancelled (shutdown / superseded): do not leave it running
                raise
        finally:
            starter.forget(inst)
        if pool.limits.memory and self.memory.watch(inst):
            log.debug("%s: worker %s: memory limit polled (no cgroup holds it)", target.id, inst.pid)
        log.info(
            "%s: worker %s ready in %.1f ms (cold start, %s; import + startup %.1f ms)",
            target.id, inst.pid, inst.ready_ms or 0.0,
            "forked" if getattr(inst.process, "fork_ms", None) is not None else "spawned",
            float(meta.get("startup_ms", 0.0)),
        )
        return inst

    def _learn(self, target: WorkerTarget, modules: list[str]) -> None:
        """An instance reported modules its load / first request imported: let the launcher
        (a zygote) import them now so the next cold start skips them."""
        if not self.closing and self.starter.learn(target, modules):
            self.background(self.starter.prepare(target))

    def recycle_if_due(self, inst: Instance) -> None:
        """After a request on ``inst``: replace it when it served its ``max_requests`` or its last
        ``max_failures`` requests failed (retired gracefully; the scaling step starts a new one
        as demand asks)."""
        if inst.state != "ready":
            return
        if self.max_failures and inst.failures >= self.max_failures:
            reason, why = "failures", f"its last {inst.failures} requests failed (max_failures)"
        elif inst.recycle_at is not None and inst.served >= inst.recycle_at:
            reason, why = "max_requests", f"it served {inst.served} requests (max_requests)"
        else:
            return
        pool = self.pools.get(inst.target.id)
        if pool is None or inst not in pool.instances:
            return
        pool.instances.remove(inst)
        pool.replaced[reason] = pool.replaced.get(reason, 0) + 1
        log.warning("%s: replacing worker %s: %s", inst.target.id, inst.pid, why)
        self.retire(inst)
        self.step(pool)

    def retire(self, inst: Instance) -> None:
        """Stop ``inst`` in the background after it finishes its in-flight requests."""
        if inst.state == "ready":
            inst.state = "draining"
        self.background(inst.stop(self.stop_timeout))

    def _on_exit(self, inst: Instance, _exited: object = None) -> None:
        self.live.discard(inst)
        status = inst.exited.result()
        self.memory.classify_exit(inst)
        self.memory.release(inst)
        pool = self.pools.get(inst.target.id)
        if pool is None or inst not in pool.instances:
            return
        pool.instances.remove(inst)
        if inst.kill_reason is not None:
            pool.replaced[inst.kill_reason] = pool.replaced.get(inst.kill_reason, 0) + 1
        if self.closing:
            return
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
        self.step(pool)

    def kill(self, connection: p.Connection, reason: str | None = None) -> Instance | None:
        """SIGKILL the live instance behind ``connection`` (``reason``: its ``kill_reason``);
        returns it, or None if no live instance has it."""
        for inst in self.live:
            if inst.conn is connection:
                inst.kill(reason)
                return inst
        return None

    # ----------------------------------------------------------------------------- reloads
    async def restart(self, ids: Iterable[str]) -> dict[str, RestartResult]:
        """See ``Supervisor.restart``."""
        results = {}
        waits: list[tuple[str, asyncio.Task[Instance | None]]] = []
        for fid in dict.fromkeys(ids):
            pool = self.pools.get(fid)
            if pool is None:
                continue
            results[fid] = RestartResult(fid)
            was_used = bool(pool.instances) or bool(pool.starting) or pool.load_error is not None
            pool.generation += 1
            pool.load_error, pool.load_failures, pool.retry_at = None, 0, None
            self.failed.discard(pool)
            pool.kind = None
            old, pool.instances = pool.instances, []
            pool.starting = set()  # their instances are retired when they come up (generation moved on)
            if was_used and not self.closing:
                waits.append((fid, self.spawn(pool)))
            for stale in old:
                self.retire(stale)
        for fid, task in waits:
            try:
                inst = await asyncio.wait_for(asyncio.shield(task), self.start_timeout)
                results[fid].ready_ms = inst.ready_ms if inst is not None else None
            except FunctionLoadFailed as exc:
                results[fid].error = exc.load_error
            except (WorkerError, asyncio.TimeoutError, asyncio.CancelledError) as exc:
                results[fid].error = exc
        return results

    async def update(self, targets: Iterable[WorkerTarget], started: bool) -> set[str]:
        """See ``Supervisor.update``; ``started``: the supervisor runs (warm new functions now)."""
        new = {t.id: t for t in targets}
        changed = set()
        for fid in list(self.pools):
            if fid not in new:
                pool = self.pools.pop(fid)
                pool.generation += 1
                self.failed.discard(pool)
                self.ticking.discard(pool)
                for task in list(pool.starting):
                    task.cancel()
                pool.fail_waiters(WorkerError(f"function {fid!r} was removed while the request waited", "reload the page"))
                for inst in pool.instances:
                    self.retire(inst)
        added: list[FunctionPool] = []
        for fid, target in new.items():
            known = self.pools.get(fid)
            if known is None:
                self.pools[fid] = FunctionPool(target, self.policy)
                added.append(self.pools[fid])
            else:
                if known.target != target:
                    changed.add(fid)
                known.target = target  # limits are not compared: always take the new ones
                if known.instances:
                    self._schedule(known, 0.0)  # its idle_timeout may have changed: step it at the next tick
        if started and not self.closing:
            self.starter.launcher.retain(list(new.values()), self.starter.use_uvloop)
            self.warm(added)
        if changed:
            await self.restart(changed)
        return changed

    async def close(self, timeout: float) -> None:
        """Stop every instance (each gets ``timeout`` s to finish its in-flight requests, then
        SIGKILL); waiting requests fail with ``WorkerError``; background work gets 5 s more."""
        self.closing = True
        for pool in self.pools.values():
            for task in list(pool.starting):
                task.cancel()
            pool.fail_waiters(WorkerError("the server is shutting down", "retry on another server"))
        await asyncio.gather(*(inst.stop(timeout) for inst in list(self.live)), return_exceptions=True)
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout + 5.0)
