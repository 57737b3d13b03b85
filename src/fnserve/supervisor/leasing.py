"""The request path of the supervisor: leases, the bounded queue, and ``serve`` — one request
with the function's ``max_duration`` and ``memory`` enforced, the ONE place both ``fnserve dev``
and ``fnserve start`` enforce them (``Leasing``).

Admission (``lease``): a free slot on a ready instance (load below ``concurrency``) is taken at
once; otherwise the policy's ``step`` may start instances, and the request waits in the function's
queue — at most ``queue_size`` requests beyond the slots of the instances being started, else
``Overloaded`` (503 + ``Retry-After``). A waiter gives up after ``queue_timeout`` s
(``WorkerStartTimeout`` if no instance is ready, else ``Overloaded``). Slots are handed to waiters
in arrival order as requests end and instances become ready.

``max_duration``: every request under way is watched by one sweeping timer (``Deadlines``, ~0.1 s
precision; cheaper than a timer per request); past its deadline its instance is SIGKILLed, the
request fails with ``DurationExceeded`` (504) and the instance's other requests that had not
started their response are retried once on another instance (body ≤ 1 MiB, complete).
``memory``: an instance killed over its limit (by the maintenance loop's RSS polling or the
kernel's cgroup) fails its requests with ``MemoryExceeded`` (502).

Recycling (``InstancePools.recycle_if_due``, after each request): an instance is retired
gracefully (its in-flight requests finish; the next request starts a new one) once it served
``max_requests`` (+ jitter) requests, or after ``max_failures`` failed requests in a row (the
function raised, or answered 5xx) — a function leaking file descriptors heals instead of
answering 500 forever.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..errors import (
    DurationExceeded,
    FunctionFailed,
    FunctionLoadFailed,
    HeartbeatTimeout,
    MemoryExceeded,
    Overloaded,
    WorkerCrashed,
    WorkerError,
    WorkerStartTimeout,
)
from ..project.types import Function
from ..runtime import protocol as p
from ..runtime.asgitypes import Message, Receive, Scope, Send
from .function_pool import FunctionPool, Lease
from .instance import Instance
from .memory import MemoryGuard
from .pools import InstancePools

log = logging.getLogger("fnserve.supervisor")

REPLAY_LIMIT = 1 << 20  # bytes of request body kept to retry a request on another instance


class Forward(Protocol):
    """Runs one ASGI conversation on a worker connection: ``fnserve.server.upstream.forward``.
    The awaitable returns the response status (0: none; None from a forward that does not tell,
    then no failure is counted). Raises ``WorkerCrashed`` (the connection broke) or
    ``FunctionFailed`` (the app raised)."""

    def __call__(self, connection: p.Connection, scope: Scope, receive: Receive, send: Send) -> Awaitable[int | None]: ...


class _Replay:
    """Wraps ``receive`` and records the request body (up to ``REPLAY_LIMIT`` bytes) so the
    request can be sent again to another instance; ``rewind()`` replays it."""

    __slots__ = ("_receive", "messages", "size", "complete", "overflow", "_pos")

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self.messages: list[Message] = []
        self.size = 0
        self.complete = False
        self.overflow = False
        self._pos: int | None = None

    @property
    def replayable(self) -> bool:
        return self.complete and not self.overflow

    def rewind(self) -> None:
        self._pos = 0

    async def receive(self) -> Message:
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


class Deadlines:
    """``max_duration`` for every request under way with one timer: ``add(lease, at)`` registers a
    lease until ``discard(lease)``; a sweep every ``tick`` s (scheduled only while some are
    registered) calls ``expire(lease)`` for those past their deadline (loop time, s). ~0.5 µs per
    request instead of a timer handle each; ``tick`` is the precision, ample for limits in seconds."""

    def __init__(self, expire: Callable[[Lease], None], tick: float = 0.1) -> None:
        self.tick = tick
        self.pending: set[Lease] = set()
        self._expire = expire
        self._handle: asyncio.TimerHandle | None = None

    def add(self, lease: Lease, at: float, loop: asyncio.AbstractEventLoop) -> None:
        lease.deadline = at
        self.pending.add(lease)
        if self._handle is None:
            self._handle = loop.call_later(self.tick, self._sweep, loop)

    def discard(self, lease: Lease) -> None:
        self.pending.discard(lease)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        self._handle = None
        now = loop.time()
        for lease in [lease for lease in self.pending if lease.deadline is not None and lease.deadline <= now]:
            self.pending.discard(lease)
            self._expire(lease)
        if self.pending:
            self._handle = loop.call_later(self.tick, self._sweep, loop)


class Leasing:
    """Requests' slots on instances and their limits (see the module docstring). ``pools``: the
    ``InstancePools`` (scaling steps start instances); ``memory``: tells a memory kill from a
    crash; ``start_timeout`` / ``queue_timeout``: s (``queue_timeout`` None: ``start_timeout``);
    ``heartbeat_timeout``: s, the watchdog's (named in ``HeartbeatTimeout``)."""

    def __init__(self, pools: InstancePools, memory: MemoryGuard, *, start_timeout: float,
                 queue_timeout: float | None, heartbeat_timeout: float | None = None) -> None:
        self.pools = pools
        self.heartbeat_timeout = heartbeat_timeout
        self.memory = memory
        self.start_timeout = start_timeout
        self.queue_timeout = queue_timeout
        self.deadlines = Deadlines(self._expire)
        # called with a pool when one of its requests starts waiting for a slot (the direct path:
        # DirectChannels.reclaim asks for idle passed connections back)
        self.on_queue: Callable[[FunctionPool], None] | None = None

    async def lease(self, function: Function | str) -> Lease:
        """See ``Supervisor.lease``."""
        pool = self.pools.get(function)
        if not pool.waiters:
            inst = pool.free()
            if inst is not None:
                return pool.grant(inst)
        return await self._wait(pool)

    async def _wait(self, pool: FunctionPool) -> Lease:
        """Queue for a slot of ``pool`` (starting instances as the policy says)."""
        if self.pools.closing:
            raise WorkerError("the server is shutting down", "retry on another server")
        if pool.load_error is not None:
            if self.pools.retry_due(pool):
                self.pools.retry(pool)  # this request waits for the attempt
            elif not pool.starting:
                raise FunctionLoadFailed(pool.target.id, pool.load_error)
        loop = asyncio.get_running_loop()
        self.pools.step(pool, extra=1)
        limits = pool.limits
        room = limits.queue_size + len(pool.starting) * limits.concurrency
        if pool.queued >= room:
            raise Overloaded(pool.target.id, limits.queue_size, retry_after=1)
        waiter: asyncio.Future[Instance] = loop.create_future()
        pool.waiters.append(waiter)
        pool.feed()
        if self.on_queue is not None and not waiter.done():
            self.on_queue(pool)
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
                pool.feed()
            waiter.cancel()
            raise
        return pool.lease(inst, (loop.time() - began) * 1000)

    async def serve(self, function: Function | str, scope: Scope, receive: Receive, send: Send, forward: Forward,
                    on_lease: Callable[[Lease], None] | None = None) -> None:
        """See ``Supervisor.serve``."""
        pool = self.pools.get(function)
        fid = pool.target.id
        replay = _Replay(receive) if scope.get("type") == "http" else None
        for attempt in range(2):
            inst = pool.free() if attempt == 0 and not pool.waiters else None
            if inst is not None:  # lease()'s fast path, without a coroutine per request
                lease = pool.grant(inst)
            else:
                lease = await self._wait(pool)
            inst = lease.instance
            limits = pool.limits
            max_duration = limits.max_duration if replay is not None else None
            if on_lease is not None:
                on_lease(lease)
            if max_duration:
                loop = lease.connection.loop  # not asyncio.get_running_loop(): a getpid() each on Python < 3.12
                self.deadlines.add(lease, loop.time() + max_duration, loop)
            try:
                # forward tells the status: no send wrapper to count failed requests (max_failures)
                status = await forward(lease.connection, scope, replay.receive if replay else receive, send)
                if replay is not None:
                    inst.failures = inst.failures + 1 if (status or 0) >= 500 else 0
                return
            except FunctionFailed:
                inst.failures += 1
                raise
            except WorkerCrashed as exc:
                reason = await self._crash_reason(inst)
                if lease.expired:
                    raise DurationExceeded(fid, max_duration or 0.0, response_started=exc.response_started) from None
                if reason == "memory":
                    raise MemoryExceeded(fid, limits.memory or 0, inst.peak_rss_mb, response_started=exc.response_started) from None
                if reason == "heartbeat":
                    raise HeartbeatTimeout(fid, self.heartbeat_timeout or 0.0, inst.silent_s,
                                           response_started=exc.response_started) from None
                if reason == "duration" and not exc.response_started and replay and replay.replayable and attempt == 0:
                    log.info("%s: retrying a request on another worker (worker %s was killed for another request)", fid, inst.pid)
                    replay.rewind()
                    continue
                raise
            finally:
                if max_duration:
                    self.deadlines.discard(lease)
                lease.release()
                self.pools.recycle_if_due(inst)

    def _expire(self, lease: Lease) -> None:
        inst = lease.instance
        if inst.exited.done():
            return
        lease.expired = True
        pool = self.pools.pools.get(inst.target.id)
        limit = pool.limits.max_duration if pool is not None else None
        log.warning("%s: a request ran past its maxDuration of %g s; killing worker %s (504)",
                    inst.target.id, limit or 0.0, inst.pid)
        inst.kill("duration")

    async def _crash_reason(self, inst: Instance) -> str | None:
        """Why ``inst`` died (after waiting up to 2 s for its exit): "duration", "memory",
        "heartbeat" or None (it crashed by itself)."""
        if inst.kill_reason is None:
            try:
                await asyncio.wait_for(asyncio.shield(inst.exited), 2.0)
            except asyncio.TimeoutError:
                pass
        self.memory.classify_exit(inst)
        return inst.kill_reason
