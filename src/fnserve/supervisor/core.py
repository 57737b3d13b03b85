"""The supervisor: starts, watches, restarts and stops the worker processes of functions.

It knows targets, processes and sockets — never HTTP. The front server calls ``serve(function,
scope, receive, send, forward)`` with ``fnserve.server.upstream.forward`` (or asks for a
connection: ``lease`` / ``acquire``).

``Supervisor`` is a thin facade over objects that each own one responsibility:

- ``InstancePools`` (``pools``): one ``FunctionPool`` per function (``function_pool``), starting
  instances (through ``InstanceStarter``, ``starter``: the worker socket and the launcher),
  admitting, retiring, replacing (``restart``) and removing (``update``) them; the
  ``ScalingPolicy`` (``scaling``) decides how many run: ``"single"`` (dev: one, started by the
  first request) or ``"autoscale"`` (``fnserve start``: ``min_instances`` .. ``max_instances`` by
  demand, idle ones stopped after ``idle_timeout``);
- ``Leasing`` (``leasing``): request slots, the bounded queue (``Overloaded`` when full) and
  ``serve``, the one place ``max_duration`` (504, instance SIGKILLed) and ``memory`` (502,
  instance replaced) are enforced, from the target's ``FunctionLimits``;
- ``MemoryGuard`` (``memory``): the memory limiter (cgroup or RLIMIT_AS) and, without a cgroup,
  RSS polling over each instance's process group;
- ``Maintenance`` (``maintenance``): the background loops (heartbeat watchdog, scaling ticks for
  the functions with a step due, memory polling rounds);
- ``DirectChannels`` (``handoff``, ``direct``; with ``direct=True``): the direct path's channels,
  client connections passed to instances (``pass_connection``), one lease each, and their plans.
Nothing on a request's or a cold start's path walks every function or instance: ``status()``
does, and only ``/_fnserve/metrics`` and the dashboard call it.
All processes live in one event loop.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from ..errors import WorkerError
from ..project.types import Function
from ..runtime import protocol as p
from ..runtime.asgitypes import Receive, Scope, Send
from .function_pool import Lease
from .handoff import DirectChannels, HandBack, LostHook, PlanProvider, ReportHook
from .launch import Launcher, SpawnLauncher
from .leasing import Forward, Leasing
from .limits import MemoryLimiter
from .maintenance import Maintenance
from .memory import MemoryGuard
from .pools import InstancePools, RestartResult
from .scaling import POLICIES, ScalingPolicy
from .starter import InstanceStarter
from .target import WorkerTarget

__all__ = ["RestartResult", "Supervisor"]

log = logging.getLogger("fnserve.supervisor")


class Supervisor:
    """Worker processes for a set of functions.

    ``targets``: the initial ``WorkerTarget``s (more via ``update``). ``launcher``: the start
    strategy (default ``SpawnLauncher()``; ``ZygoteLauncher()`` forks from a warm zygote).
    ``policy``: a ``ScalingPolicy`` or its name in ``scaling.POLICIES`` (default ``"single"``, dev's
    one instance; ``"autoscale"`` for production). ``start_timeout``: seconds a request waits for a
    worker to become ready. ``queue_timeout``: seconds a request waits in the queue (default
    ``start_timeout``). ``stop_timeout``: seconds an instance gets to finish in-flight requests when
    stopped. ``heartbeat``: seconds between worker heartbeats (default: ``heartbeat_timeout`` / 6,
    at most 5 s; 5 s without a watchdog — each beat costs CPU in the worker and the front, so
    1,000 idle instances beating every second took ~17 % of a core); ``heartbeat_timeout``:
    SIGKILL an instance silent for that long (None: never). ``memory_limiter``: a ``MemoryLimiter`` or
    "auto" / "cgroup2" / "cgroup1" / "rlimit" / "none" (detected when a target first has a memory
    limit). ``memory_poll``: seconds between RSS polling rounds at least (only instances no cgroup
    limits are polled; rounds are spaced out to stay under 2 % of a core, see ``memory``);
    ``tick``: seconds between scaling passes (each steps only the functions with a step due).
    ``use_uvloop``: workers use uvloop when their environment has it. ``load_retry``: s, the
    longest backoff between retries of a failed load (None: a failed load waits for ``restart``,
    dev's behaviour; see ``pools``). ``max_requests`` (+ random 0..``max_requests_jitter``): an
    instance is replaced after serving that many requests (gunicorn's ``--max-requests``), 0:
    never; ``max_failures``: after that many failed requests (raised or 5xx) in a row, 0: never
    (both through ``serve``). ``rlimits``: ``{"nofile": n, "nproc": n}`` for every instance
    (issue 10 item 7: ``RLIMIT_NOFILE`` / ``RLIMIT_NPROC``; 0 or absent: inherited). ``direct``:
    the direct path (``fnserve start``; issue 14 item 2): workers also connect to ``direct.sock``
    and the front may pass them client connections (``pass_connection``). Use ``async with
    Supervisor(...)`` or call ``shutdown()``.

    Its parts (see the module docstring): ``pools`` (``InstancePools``: ``.pools`` id →
    ``FunctionPool``, ``.live`` instances), ``leasing`` (``Leasing``), ``memory``
    (``MemoryGuard``: ``.limiter``), ``starter`` (``InstanceStarter``), ``maintenance``,
    ``direct`` (``handoff.DirectChannels``).
    """

    def __init__(
        self,
        targets: Iterable[WorkerTarget] = (),
        *,
        launcher: Launcher | None = None,
        policy: ScalingPolicy | str = "single",
        start_timeout: float = 30.0,
        queue_timeout: float | None = None,
        stop_timeout: float = 10.0,
        heartbeat: float | None = None,
        heartbeat_timeout: float | None = None,
        memory_limiter: MemoryLimiter | str = "auto",
        memory_poll: float = 0.25,
        tick: float = 0.25,
        use_uvloop: bool = True,
        load_retry: float | None = None,
        max_requests: int = 0,
        max_requests_jitter: int = 0,
        max_failures: int = 0,
        rlimits: Mapping[str, int] | None = None,
        direct: bool = False,
    ) -> None:
        self.launcher = launcher or SpawnLauncher()
        self.policy = POLICIES[policy]() if isinstance(policy, str) else policy
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        if heartbeat is None:  # each beat wakes the worker and the front: ~0.2 ms of CPU, × instances
            heartbeat = min(5.0, max(0.05, heartbeat_timeout / 6)) if heartbeat_timeout else 5.0
        self.memory = MemoryGuard(memory_limiter)
        self.starter = InstanceStarter(self.launcher, self.memory, heartbeat=heartbeat, stop_timeout=stop_timeout,
                                       use_uvloop=use_uvloop, rlimits=rlimits, direct=direct)
        self.pools = InstancePools(targets, self.policy, self.starter, self.memory, start_timeout=start_timeout,
                                   stop_timeout=stop_timeout, ensure_started=self.start,
                                   load_retry=load_retry, max_requests=max_requests,
                                   max_requests_jitter=max_requests_jitter, max_failures=max_failures)
        self.leasing = Leasing(self.pools, self.memory, start_timeout=start_timeout, queue_timeout=queue_timeout,
                               heartbeat_timeout=heartbeat_timeout)
        self.pools.recheck = tick
        self.direct: DirectChannels = self.starter.direct
        self.direct.recycle = self.pools.recycle_if_due
        self.direct.classify = self.memory.classify_exit
        self.direct.max_failures, self.direct.heartbeat_timeout = max_failures, heartbeat_timeout
        if direct:  # requests queued on the frames path get the slots of idle passed connections
            self.leasing.on_queue = self.direct.reclaim
        self.maintenance = Maintenance(self.pools, self.memory, memory_poll=memory_poll, tick=tick,
                                       heartbeat_timeout=heartbeat_timeout)
        self._start_lock: asyncio.Lock | None = None

    # ----------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open the Unix socket workers connect to, start the maintenance task, warm the
        launcher (zygotes) and the ``min_instances`` of every function (idempotent; ``lease``,
        ``serve`` and ``acquire`` call it when they start an instance)."""
        if self.starter.is_open:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self.starter.is_open:
                return
            await self.starter.open(asyncio.get_running_loop())
            self.maintenance.start()
        self.pools.warm(self.pools.pools.values())

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop every instance gracefully (each gets ``timeout`` s, default ``stop_timeout``, to
        finish in-flight requests; then SIGKILL), stop the zygotes, close the socket. ``lease``
        and ``acquire`` fail afterwards."""
        timeout = self.stop_timeout if timeout is None else timeout
        self.maintenance.stop()
        await self.pools.close(timeout)
        await self.starter.close()
        self.memory.close()

    # ----------------------------------------------------------------------------- requests
    def serve(self, function: Function | str, scope: Scope, receive: Receive, send: Send, forward: Forward,
              on_lease: Callable[[Lease], None] | None = None) -> Awaitable[None]:
        """Run one ASGI conversation on an instance of ``function`` (a ``Function`` or its id) with
        the function's limits: ``forward(connection, scope, receive, send)`` is
        ``fnserve.server.upstream.forward``. Returns the awaitable doing it (no extra coroutine
        layer per request).

        Raises what ``lease`` raises, plus ``DurationExceeded`` (504: the request ran past
        ``max_duration`` s; its instance was SIGKILLed), ``MemoryExceeded`` (502: the instance went
        over ``memory`` MB and was replaced), ``HeartbeatTimeout`` (502: its event loop was blocked
        past ``heartbeat_timeout``), ``WorkerCrashed`` (502), ``FunctionFailed`` (500).
        Requests on an instance killed for ANOTHER request's ``max_duration`` are retried once on
        another instance when their response had not started and their body (≤ 1 MiB) is complete.
        ``on_lease(lease)``: called before each attempt is forwarded (access log / metrics:
        ``lease.instance.pid``, ``lease.cold``, ``lease.waited_ms``).
        """
        return self.leasing.serve(function, scope, receive, send, forward, on_lease)

    def lease(self, function: Function | str) -> Awaitable[Lease]:
        """A slot on a ready instance of ``function`` (a ``Function`` or its id), waiting in the
        function's queue and starting instances as the scaling policy says. Release it when the
        request ends (``async with await supervisor.lease(f) as lease``).

        Raises ``Overloaded`` (503: queue full, or waited ``queue_timeout`` s), ``FunctionLoadFailed``
        (500), ``WorkerStartTimeout`` (503), ``WorkerError`` (unknown function, shutting down).
        """
        return self.leasing.lease(function)

    async def acquire(self, function: Function | str) -> p.Connection:
        """A connection to a ready instance of ``function`` (a ``Function`` or its id), starting
        one if none runs. Give it to ``fnserve.server.upstream.forward`` right away. Unlike
        ``lease``/``serve`` it holds no slot (dev and tests; production uses ``serve``).

        Raises ``FunctionLoadFailed`` (500: the function does not import; carries the LoadError
        with its traceback), ``WorkerStartTimeout`` (not ready within ``start_timeout`` s),
        ``Overloaded`` (503), ``WorkerError`` (unknown function, interpreter cannot be started, or
        the supervisor is shutting down).
        """
        pool = self.pools.get(function)
        inst = pool.pick()
        if inst is not None and inst.conn is not None and not pool.waiters:
            return inst.conn
        await self.start()
        lease = await self.leasing.lease(pool.target.id)
        lease.release()
        return lease.connection

    # ----------------------------------------------------------------------------- direct path
    def pass_connection(self, function: Function | str, sock: socket.socket, data: bytes) -> bool:
        """Pass a client connection to a ready instance of ``function`` (a ``Function`` or its
        id), which serves it from then on (the direct path; ``direct=True``). ``sock``: the
        client's connected socket; ``data``: the bytes already read from it (the start of its
        first request; at most ``handoff.DIRECT_MAX_PACKET`` - 9 bytes). Synchronous: never waits,
        never starts an instance.

        True: passed; the instance holds one lease (``FunctionPool.grant``) until it reports the
        connection closed or handed back (``on_hand_back``) or exits; close your copy of ``sock``.
        False, and nothing changed (you still own ``sock`` and serve it through the frames
        path): direct path off, unknown function, requests queued for it, no ready instance
        with a channel, a plan and a free slot (load below ``concurrency``), ``data`` too long,
        or the channel's buffer full (EAGAIN / ENOBUFS) or broken. Never raises."""
        try:
            pool = self.pools.get(function)
        except WorkerError:
            return False
        return self.direct.pass_to(pool, sock, data)

    @property
    def on_hand_back(self) -> HandBack:
        """``on_hand_back(sock, data)``, set by the front: a worker gave back a passed connection
        (``sock``: a new ``socket.socket`` the hook owns, as the worker left it: non-blocking at
        the OS level; ``data``: bytes it read and did not serve, starting at a request's first
        byte). Called on the event loop; must not block. Default: close ``sock``. An exception
        it raises is logged and ``sock`` closed."""
        return self.direct.on_hand_back

    @on_hand_back.setter
    def on_hand_back(self, hook: HandBack) -> None:
        self.direct.on_hand_back = hook

    @property
    def on_direct_lost(self) -> LostHook:
        """``on_direct_lost(sock, function_id, error, request, pid)``, set by the front: the instance holding a
        passed connection died while a request on it had not started its response; ``sock``: the
        front's duplicate of the client socket (the hook owns it), ``error``: the ``WorkerError``
        the frames path would answer (``WorkerCrashed`` 502, ``MemoryExceeded``, ``HeartbeatTimeout``,
        ``DurationExceeded`` 504), ``request``: the worker's record of that request
        (``slottable.SlotRequest``: id, method, target, start) or None, ``pid``: the instance's.
        Default: close ``sock``."""
        return self.direct.on_lost

    @on_direct_lost.setter
    def on_direct_lost(self, hook: LostHook) -> None:
        self.direct.on_lost = hook

    @property
    def on_direct_report(self) -> ReportHook | None:
        """``on_direct_report(function_id, pid, requests)``, set by the front (access log,
        metrics): requests an instance served on its direct connections, ``requests`` a list of
        ``[request_id: str, method: str, path_with_query: str, status: int (0: no response),
        duration_ms: float]`` (malformed entries dropped). Called on the event loop after
        ``served`` / ``failures`` were counted. Default None."""
        return self.direct.on_report

    @on_direct_report.setter
    def on_direct_report(self, hook: ReportHook | None) -> None:
        self.direct.on_report = hook

    def set_direct_plan(self, provider: PlanProvider | None) -> None:
        """``provider(function_id) -> plan dict | None`` (docs: the direct path's plan, JSON-able:
        version, function, routes, exclude, limits): what each instance is sent (``DIRECT_PLAN``)
        right after READY; None from it: that instance gets no direct connection. Sends the
        plan to the instances already ready (``refresh_direct_plans``)."""
        self.direct.plan = provider
        self.direct.refresh()

    def refresh_direct_plans(self) -> int:
        """Send every ready instance its plan again (after a site reload). Returns how many got
        one."""
        return self.direct.refresh()

    def direct_stats(self) -> dict[str, int]:
        """Direct-path connections since the start: ``{"passed", "handed_back", "closed" (the
        worker closed them), "lost" (their instance exited holding them, or the worker reported
        them wrongly), "open" (held now)}``. O(1)."""
        return self.direct.stats()

    # ----------------------------------------------------------------------------- reloads
    async def restart(self, ids: Iterable[str]) -> dict[str, RestartResult]:
        """Replace the instances of the functions ``ids`` (their code changed): forget a
        remembered load error; if the function was in use (an instance, a start, or a load error),
        start a new instance now; new requests wait for it (bounded) while the old instances
        finish their in-flight requests and stop. Unknown ids are ignored. Returns, per id, the
        new instance's ready time or its load error. Never raises for a function's failure."""
        return await self.pools.restart(ids)

    async def update(self, targets: Iterable[WorkerTarget]) -> set[str]:
        """Make ``targets`` the set of functions: new ids are added (started lazily), missing ids
        are removed (their instances drained and stopped), changed targets (spec, interpreter or
        environment) are restarted. Returns the ids that were restarted."""
        return await self.pools.update(targets, started=self.starter.is_open)

    def kill(self, connection: p.Connection, reason: str) -> bool:
        """SIGKILL the instance behind ``connection`` now (its in-flight requests get
        ``WorkerCrashed``). ``reason`` is logged. Returns False if no live instance has it."""
        inst = self.pools.kill(connection, "duration" if "maxDuration" in reason else None)
        if inst is not None:
            log.warning("%s: killed worker %s: %s", inst.target.id, inst.pid, reason)
        return inst is not None

    # ----------------------------------------------------------------------------- status
    def load_error(self, function_id: str) -> Any:
        """The remembered ``LoadError`` of a function, or None."""
        pool = self.pools.pools.get(function_id)
        return pool.load_error if pool else None

    def spawn_count(self, function_id: str) -> int:
        """How many worker processes were started for the function so far."""
        pool = self.pools.pools.get(function_id)
        return pool.spawn_count if pool else 0

    def failed_loads(self) -> dict[str, dict[str, Any]]:
        """Functions in a failed-load state: id → ``{"failures": int (in a row), "retry_in": s
        until the next retry or None}`` — O(failed functions), for ``/_fnserve/ready`` (no error
        text: it may hold secrets; it is in the log)."""
        now = asyncio.get_running_loop().time() if self.starter.is_open else 0.0
        return {pool.target.id: {"failures": pool.load_failures,
                                 "retry_in": max(0.0, pool.retry_at - now) if pool.retry_at is not None and now else None}
                for pool in self.pools.failed if pool.load_error is not None}

    def status(self) -> dict[str, dict[str, Any]]:
        """Per function id: ``{"instances": [Instance.info()], "starting": int, "queued": int,
        "spawns": int, "cold_starts": int, "kind": str | None, "limits": FunctionLimits,
        "load_error": str | None, "replaced": {reason: int}, "load_failures": int (in a row), "load_failures_total": int,
        "retry_in": float | None (s until the next load retry)}``. It walks every function and
        instance: only for what asks for the whole picture (``/_fnserve/metrics``, the dashboard),
        never per request or per cold start (``failed_loads`` is readiness's O(failed) view)."""
        now = asyncio.get_running_loop().time() if self.starter.is_open else 0.0
        return {
            fid: {
                "instances": [inst.info() for inst in pool.instances],
                "starting": len(pool.starting),
                "queued": pool.queued,
                "spawns": pool.spawn_count,
                "cold_starts": pool.cold_starts,
                "kind": pool.kind,
                "limits": pool.limits,
                "load_error": getattr(pool.load_error, "message", None) if pool.load_error else None,
                "replaced": dict(pool.replaced),
                "load_failures": pool.load_failures,
                "load_failures_total": pool.load_failures_total,
                "retry_in": max(0.0, pool.retry_at - now) if pool.retry_at is not None and now else None,
            }
            for fid, pool in self.pools.pools.items()
        }
