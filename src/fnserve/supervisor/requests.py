"""The request path of the supervisor: leases, the bounded queue, scaling steps, and ``serve``
(one request with ``max_duration`` and ``memory`` enforced). Mixed into ``Supervisor``.

Admission (``lease``): a free slot on a ready instance (load below ``concurrency``) is taken at
once; otherwise the policy's ``step`` may start instances, and the request waits in the function's
queue — at most ``queue_size`` requests beyond the slots of the instances being started, else
``Overloaded`` (503 + ``Retry-After``). A waiter gives up after ``queue_timeout`` s
(``WorkerStartTimeout`` if no instance is ready, else ``Overloaded``). Slots are handed to waiters
in arrival order as requests end and instances become ready.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from ..errors import (
    DurationExceeded,
    FunctionLoadFailed,
    MemoryExceeded,
    Overloaded,
    WorkerCrashed,
    WorkerError,
    WorkerStartTimeout,
)
from ..project.types import Function
from .instance import Instance
from .pool import FunctionPool, Lease

log = logging.getLogger("fnserve.supervisor")

REPLAY_LIMIT = 1 << 20  # bytes of request body kept to retry a request on another instance

Forward = Callable[[Any, Any, Any, Any], Awaitable[None]]


class _Replay:
    """Wraps ``receive`` and records the request body (up to ``REPLAY_LIMIT`` bytes) so the
    request can be sent again to another instance; ``rewind()`` replays it."""

    def __init__(self, receive: Callable[[], Awaitable[Any]]) -> None:
        self._receive = receive
        self.messages: list[Any] = []
        self.size = 0
        self.complete = False
        self.overflow = False
        self._pos: int | None = None

    @property
    def replayable(self) -> bool:
        return self.complete and not self.overflow

    def rewind(self) -> None:
        self._pos = 0

    async def receive(self) -> Any:
        if self._pos is not None and self._pos < len(self.messages):
            self._pos += 1
            return self.messages[self._pos - 1]
        message = await self._receive()
        if not self.complete and not self.overflow and message.get("type") == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > REPLAY_LIMIT:
                self.overflow, self.messages = True, []
            else:
                self.messages.append(message)
                self.complete = not message.get("more_body", False)
        return message


class RequestPath:
    """``Supervisor`` methods for requests (see the module docstring)."""

    _pools: dict[str, FunctionPool]
    _closing: bool
    start_timeout: float
    queue_timeout: float | None

    # ------------------------------------------------------------------------------- leases
    def _pool(self, function: Function | str) -> FunctionPool:
        fid = function if isinstance(function, str) else function.id
        pool = self._pools.get(fid)
        if pool is None:
            raise WorkerError(f"no function {fid!r} is known to the supervisor", "call update() with the project's functions")
        return pool

    async def lease(self, function: Function | str) -> Lease:
        """A slot on a ready instance of ``function`` (a ``Function`` or its id), waiting in the
        function's queue and starting instances as the scaling policy says. Release it when the
        request ends (``async with await supervisor.lease(f) as lease``).

        Raises ``Overloaded`` (503: queue full, or waited ``queue_timeout`` s), ``FunctionLoadFailed``
        (500), ``WorkerStartTimeout`` (503), ``WorkerError`` (unknown function, shutting down).
        """
        pool = self._pool(function)
        if not pool.waiters:
            inst = pool.free()
            if inst is not None:
                return self._grant(pool, inst, 0.0)
        if self._closing:
            raise WorkerError("the server is shutting down", "retry on another server")
        if pool.load_error is not None:
            raise FunctionLoadFailed(pool.target.id, pool.load_error)
        loop = asyncio.get_running_loop()
        self._step(pool, extra=1)
        limits = pool.limits
        room = limits.queue_size + len(pool.starting) * limits.concurrency
        if sum(1 for w in pool.waiters if not w.done()) >= room:
            raise Overloaded(pool.target.id, limits.queue_size, retry_after=1)
        waiter = loop.create_future()
        pool.waiters.append(waiter)
        self._feed(pool)
        began = loop.time()
        timeout = self.queue_timeout if self.queue_timeout is not None else self.start_timeout
        try:
            inst = await asyncio.wait_for(asyncio.shield(waiter), timeout)
        except asyncio.TimeoutError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                inst = waiter.result()  # granted at the last moment
            else:
                waiter.cancel()
                if pool.pick() is None:
                    raise WorkerStartTimeout(pool.target.id, timeout) from None
                raise Overloaded(pool.target.id, limits.queue_size, retry_after=1,
                                 reason=f"{pool.target.id}: every instance stayed busy for {timeout:g} s") from None
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                waiter.result().leases -= 1  # granted, but our caller went away
                self._feed(pool)
            waiter.cancel()
            raise
        return self._make_lease(pool, inst, (loop.time() - began) * 1000)

    def _grant(self, pool: FunctionPool, inst: Instance, waited_ms: float) -> Lease:
        inst.leases += 1
        return self._make_lease(pool, inst, waited_ms)

    def _make_lease(self, pool: FunctionPool, inst: Instance, waited_ms: float) -> Lease:
        cold = inst.served == 0
        inst.served += 1
        inst.idle_since = None
        return Lease(inst, cold, waited_ms, lambda lease, pool=pool: self._release(pool, lease))

    def _release(self, pool: FunctionPool, lease: Lease) -> None:
        inst = lease.instance
        inst.leases -= 1
        if inst.leases <= 0 and inst.load == 0:
            inst.idle_since = asyncio.get_running_loop().time()
        if pool.waiters:
            self._feed(pool)

    def _feed(self, pool: FunctionPool) -> None:
        """Hand free slots to waiters, oldest first."""
        while pool.waiters:
            if pool.waiters[0].done():
                pool.waiters.popleft()
                continue
            inst = pool.free()
            if inst is None:
                return
            inst.leases += 1
            pool.waiters.popleft().set_result(inst)

    def _step(self, pool: FunctionPool, extra: int = 0) -> None:
        """Ask the policy what to do now and do it (start instances, retire idle ones)."""
        if self._closing or pool.load_error is not None or self._pools.get(pool.target.id) is not pool:
            return
        loop = asyncio.get_running_loop()
        decision = pool.policy.step(pool.view(loop.time(), extra))
        for _ in range(decision.start):
            self._spawn(pool)
        if decision.stop:
            stop = set(decision.stop)
            for inst in [i for i in pool.instances if i.key in stop]:
                pool.instances.remove(inst)
                log.info("%s: stopping idle worker %s (idle for more than %g s)",
                         pool.target.id, inst.pid, pool.limits.idle_timeout)
                self._retire(inst)  # type: ignore[attr-defined]

    def _spawn(self, pool: FunctionPool) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(self._start(pool))  # type: ignore[attr-defined]
        pool.starting.add(task)
        task.add_done_callback(lambda t, pool=pool: self._started(pool, t))
        return task

    def _started(self, pool: FunctionPool, task: asyncio.Task) -> None:
        pool.starting.discard(task)
        if task.cancelled():
            error: BaseException | None = None
        else:
            error = task.exception()
        if error is not None and not pool.starting and pool.pick() is None:
            if isinstance(error, WorkerError):
                pool.fail_waiters(error)
            else:
                pool.fail_waiters(WorkerError(f"{pool.target.id}: could not start a worker: {error}", None))
        if not self._closing and self._pools.get(pool.target.id) is pool:
            self._feed(pool)
            if error is None or pool.pick() is not None:
                self._step(pool)

    # ------------------------------------------------------------------------------- serve
    async def serve(self, function: Function | str, scope: Any, receive: Any, send: Any, forward: Forward,
                    on_lease: Callable[[Lease], None] | None = None) -> None:
        """Run one ASGI conversation on an instance of ``function`` with the function's limits:
        ``forward(connection, scope, receive, send)`` is ``fnserve.server.upstream.forward``.

        Raises what ``lease`` raises, plus ``DurationExceeded`` (504: the request ran past
        ``max_duration`` s; its instance was SIGKILLed), ``MemoryExceeded`` (502: the instance went
        over ``memory`` MB and was replaced), ``WorkerCrashed`` (502), ``FunctionFailed`` (500).
        Requests on an instance killed for ANOTHER request's ``max_duration`` are retried once on
        another instance when their response had not started and their body (≤ 1 MiB) is complete.
        ``on_lease(lease)``: called before each attempt is forwarded (access log / metrics:
        ``lease.instance.pid``, ``lease.cold``, ``lease.waited_ms``).
        """
        pool = self._pool(function)
        fid = pool.target.id
        replay = _Replay(receive) if scope.get("type") == "http" else None
        loop = asyncio.get_running_loop()
        for attempt in range(2):
            inst = pool.free() if attempt == 0 and not pool.waiters else None
            if inst is not None:  # lease()'s fast path, without a coroutine per request
                lease = self._grant(pool, inst, 0.0)
            else:
                lease = await self.lease(pool.target.id)
            inst = lease.instance
            limits = pool.limits
            timer = None
            if on_lease is not None:
                on_lease(lease)
            if replay is not None and limits.max_duration:
                timer = loop.call_later(limits.max_duration, self._expire, lease, limits.max_duration)
            try:
                await forward(lease.connection, scope, replay.receive if replay else receive, send)
                return
            except WorkerCrashed as exc:
                reason = await self._crash_reason(inst)
                if lease.expired:
                    raise DurationExceeded(fid, limits.max_duration or 0.0, response_started=exc.response_started) from None
                if reason == "memory":
                    raise MemoryExceeded(fid, limits.memory or 0, inst.peak_rss_mb, response_started=exc.response_started) from None
                if reason == "duration" and not exc.response_started and replay and replay.replayable and attempt == 0:
                    log.info("%s: retrying a request on another worker (worker %s was killed for another request)", fid, inst.pid)
                    replay.rewind()
                    continue
                raise
            finally:
                if timer is not None:
                    timer.cancel()
                lease.release()

    def _expire(self, lease: Lease, limit: float) -> None:
        inst = lease.instance
        if inst.exited.done():
            return
        lease.expired = True
        log.warning("%s: a request ran past its maxDuration of %g s; killing worker %s (504)", inst.target.id, limit, inst.pid)
        inst.kill("duration")

    async def _crash_reason(self, inst: Instance) -> str | None:
        """Why ``inst`` died (after waiting up to 2 s for its exit): "duration", "memory",
        "heartbeat" or None (it crashed by itself)."""
        if inst.kill_reason is None:
            try:
                await asyncio.wait_for(asyncio.shield(inst.exited), 2.0)
            except asyncio.TimeoutError:
                pass
        self._classify_exit(inst)  # type: ignore[attr-defined]
        return inst.kill_reason
