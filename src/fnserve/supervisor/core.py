"""The supervisor: starts, watches, restarts and stops the worker processes of functions.

It knows targets, processes and sockets — never HTTP. The front server asks it for a connection
(``await acquire(function)``) and hands that to ``fnserve.server.upstream.forward``.

Per function (a ``FunctionPool``, see ``pool`` and ``requests``):
- a ``ScalingPolicy`` (``scaling``) decides how many instances run: ``"single"`` (dev: one,
  started by the first request) or ``"autoscale"`` (``fnserve start``: ``min_instances`` ..
  ``max_instances`` by demand, idle ones stopped after ``idle_timeout``); requests beyond the
  instances' capacity wait in a bounded queue (``Overloaded`` when full);
- ``serve`` enforces ``max_duration`` (504, instance SIGKILLed) and ``memory`` (cgroup or RLIMIT_AS,
  plus RSS polling; 502, instance replaced) from the target's limits (``limits``);
- a crashed instance is dropped; its in-flight requests fail with ``WorkerCrashed`` (502) and the
  next ``acquire`` starts a new one;
- an instance that failed to LOAD (``LOAD_ERROR`` frame, or exit before READY) is not respawned:
  the ``LoadError`` is kept and ``FunctionLoadFailed`` raised for every ``acquire`` until
  ``restart([id])`` (a file changed) or ``update`` with a changed target;
- ``restart(ids)``: new requests wait for a new instance while the old ones finish their
  in-flight requests and stop (zero failed requests across a reload).
All processes live in one event loop; the background work is per-instance output pumps and exit
watchers, plus one maintenance task (scaling ticks, RSS polling, heartbeat watchdog).
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ..errors import FunctionLoadFailed, WorkerError, WorkerStartTimeout
from ..project.types import Function
from ..runtime import protocol as p
from .instance import Instance, LoadFailure
from .launch import Launcher, SpawnLauncher
from .limits import MemoryLimiter
from .pool import FunctionPool
from .requests import RequestPath
from .scaling import POLICIES, ScalingPolicy
from .target import WorkerTarget
from .watch import Watch

log = logging.getLogger("fnserve.supervisor")


@dataclass
class RestartResult:
    """What ``restart`` did for one function: ``ready_ms`` of the new instance (None when no
    instance was started: the function was idle), or ``error`` (the ``LoadError``) if it failed."""

    id: str
    ready_ms: float | None = None
    error: Any = None


class Supervisor(RequestPath, Watch):
    """Worker processes for a set of functions.

    ``targets``: the initial ``WorkerTarget``s (more via ``update``). ``launcher``: the start
    strategy (default ``SpawnLauncher()``; ``ZygoteLauncher()`` forks from a warm zygote).
    ``policy``: a ``ScalingPolicy`` or its name in ``scaling.POLICIES`` (default ``"single"``, dev's
    one instance; ``"autoscale"`` for production). ``start_timeout``: seconds a request waits for a
    worker to become ready. ``queue_timeout``: seconds a request waits in the queue (default
    ``start_timeout``). ``stop_timeout``: seconds an instance gets to finish in-flight requests when
    stopped. ``heartbeat``: seconds between worker heartbeats; ``heartbeat_timeout``: SIGKILL an
    instance silent for that long (None: never). ``memory_limiter``: a ``MemoryLimiter`` or
    "auto" / "cgroup2" / "cgroup1" / "rlimit" / "none" (detected when a target first has a memory
    limit). ``memory_poll``: seconds between RSS checks; ``tick``: seconds between scaling steps.
    ``use_uvloop``: workers use uvloop when their environment has it. Use ``async with
    Supervisor(...)`` or call ``shutdown()``.
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
        heartbeat: float = 1.0,
        heartbeat_timeout: float | None = None,
        memory_limiter: MemoryLimiter | str = "auto",
        memory_poll: float = 0.1,
        tick: float = 0.25,
        use_uvloop: bool = True,
    ) -> None:
        self.launcher = launcher or SpawnLauncher()
        self.policy = POLICIES[policy]() if isinstance(policy, str) else policy
        self.start_timeout = start_timeout
        self.queue_timeout = queue_timeout
        self.stop_timeout = stop_timeout
        self.heartbeat = heartbeat
        self.heartbeat_timeout = heartbeat_timeout
        self.memory_poll = memory_poll
        self.tick = tick
        self.use_uvloop = use_uvloop
        self._memory_choice = memory_limiter
        self._memory: MemoryLimiter | None = memory_limiter if isinstance(memory_limiter, MemoryLimiter) else None
        self._pools: dict[str, FunctionPool] = {t.id: FunctionPool(t, self.policy) for t in targets}
        self._pending: dict[str, Instance] = {}  # token → instance waiting for its HELLO
        self._live: set[Instance] = set()
        self._background: set[asyncio.Task] = set()
        self._server: asyncio.AbstractServer | None = None
        self._dir: str | None = None
        self._socket_path = ""
        self._start_lock: asyncio.Lock | None = None
        self._watchdog: asyncio.Task | None = None
        self._closing = False

    # ----------------------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        """Open the Unix socket workers connect to, start the maintenance task, warm the
        launcher (zygotes) and the ``min_instances`` of every function (idempotent; ``lease`` and
        ``acquire`` call it)."""
        if self._server is not None:
            return
        if self._start_lock is None:
            self._start_lock = asyncio.Lock()
        async with self._start_lock:
            if self._server is not None:
                return
            self._dir = tempfile.mkdtemp(prefix="fnserve-")
            self._socket_path = os.path.join(self._dir, "workers.sock")
            loop = asyncio.get_running_loop()
            self._server = await loop.create_unix_server(self._new_connection, self._socket_path)
            self._watchdog = loop.create_task(self._maintain())
        self._warm(self._pools.values())

    def _warm(self, pools: Iterable[FunctionPool]) -> None:
        for pool in pools:
            self._background_task(self.launcher.prepare(pool.target, self._prepare_options()))
            self._step(pool)

    def _prepare_options(self) -> dict[str, Any]:
        return {"socket": self._socket_path, "uvloop": self.use_uvloop}

    def _background_task(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop every instance gracefully (each gets ``timeout`` s, default ``stop_timeout``, to
        finish in-flight requests; then SIGKILL), stop the zygotes, close the socket. ``lease``
        and ``acquire`` fail afterwards."""
        self._closing = True
        timeout = self.stop_timeout if timeout is None else timeout
        for pool in self._pools.values():
            for task in list(pool.starting):
                task.cancel()
            pool.fail_waiters(WorkerError("the server is shutting down", "retry on another server"))
        if self._watchdog is not None:
            self._watchdog.cancel()
        await asyncio.gather(*(inst.stop(timeout) for inst in list(self._live)), return_exceptions=True)
        if self._background:
            await asyncio.wait(set(self._background), timeout=timeout + 5.0)
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        await self.launcher.close()
        if self._memory is not None:
            self._memory.close()

    # ----------------------------------------------------------------------------- requests
    async def acquire(self, function: Function | str) -> p.Connection:
        """A connection to a ready instance of ``function`` (a ``Function`` or its id), starting
        one if none runs. Give it to ``fnserve.server.upstream.forward`` right away. Unlike
        ``lease``/``serve`` it holds no slot (dev and tests; production uses ``serve``).

        Raises ``FunctionLoadFailed`` (500: the function does not import; carries the LoadError
        with its traceback), ``WorkerStartTimeout`` (not ready within ``start_timeout`` s),
        ``Overloaded`` (503), ``WorkerError`` (unknown function, interpreter cannot be started, or
        the supervisor is shutting down).
        """
        pool = self._pool(function)
        inst = pool.pick()
        if inst is not None and not pool.waiters:
            return inst.conn  # type: ignore[return-value]
        await self.start()
        lease = await self.lease(pool.target.id)
        lease.release()
        return lease.connection  # type: ignore[return-value]

    async def _start(self, pool: FunctionPool) -> Instance | None:
        """Start one instance of ``pool``'s function and add it to the pool when ready."""
        generation = pool.generation
        try:
            inst = await self._launch(pool, lambda inst: self._admit(pool, inst, generation))
        except LoadFailure as exc:
            if pool.generation == generation:
                pool.load_error = exc.load_error
                log.error(
                    "%s failed to load: %s\n%s", pool.target.id,
                    getattr(exc.load_error, "message", exc), getattr(exc.load_error, "traceback", ""),
                )
                error = FunctionLoadFailed(pool.target.id, exc.load_error)
                pool.fail_waiters(error)
                raise error from None
            return None
        if not self._admit(pool, inst, generation):
            self._retire(inst)  # superseded while starting
            return None
        return inst

    def _admit(self, pool: FunctionPool, inst: Instance, generation: int) -> bool:
        """Add a ready instance to its pool and hand it waiting requests at once (called as its
        READY arrives, before the start task resumes). False if it was superseded meanwhile."""
        if pool.generation != generation or self._closing or self._pools.get(pool.target.id) is not pool:
            return False
        if inst not in pool.instances:
            if inst.exited.done() or inst.conn is None or inst.conn.closed:
                return False
            pool.instances.append(inst)
            pool.cold_starts += 1
            if pool.kind is None:
                pool.kind = inst.kind
            self._feed(pool)
        return True

    async def _launch(self, pool: FunctionPool, on_ready: Any = None) -> Instance:
        await self.start()
        target = pool.target
        token = secrets.token_hex(8)
        inst = Instance(target, token)
        self._pending[token] = inst
        pool.spawn_count += 1
        options = {
            "socket": self._socket_path,
            "token": token,
            "heartbeat": self.heartbeat,
            "stop_timeout": self.stop_timeout,
            "uvloop": self.use_uvloop,
        }
        inst.on_imported = lambda names, target=target: self._learn(target, names)
        inst.on_ready = on_ready
        memory = pool.limits.memory
        if memory:
            limiter = self._memory_limiter()
            options.update(limiter.options(token, memory))
            inst.limit_key = token  # type: ignore[attr-defined]
            if options.get("cgroup") and getattr(self.launcher, "standby_cgroups", False):
                options["standby_cgroup"] = limiter.spare()  # for the zygote's next standby
        try:
            try:
                process = await self.launcher.launch(target, options)
            except OSError as exc:
                self._release_limit(inst)
                raise WorkerError(
                    f"cannot start {target.python} for {target.id}: {exc}",
                    "check that the function's Python interpreter exists and is executable",
                ) from exc
            if memory:
                self._adopt_cgroup(inst, process, memory, options.get("standby_cgroup"))
            inst.watch(process)
            self._live.add(inst)
            inst.exited.add_done_callback(lambda _f, inst=inst: self._on_exit(inst))
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
            self._pending.pop(token, None)
        log.info(
            "%s: worker %s ready in %.1f ms (cold start, %s; import + startup %.1f ms)",
            target.id, inst.pid, inst.ready_ms or 0.0, getattr(process, "fork_ms", None) is not None and "forked" or "spawned",
            float(meta.get("startup_ms", 0.0)),
        )
        return inst

    def _adopt_cgroup(self, inst: Instance, process: Any, memory: int, spare: str | None) -> None:
        """A forked standby was already in a spare cgroup: make it the instance's (limit written
        now, ~1 ms after the fork; RSS polling covers that window). Spares the zygote will not use,
        or that a spawn fallback ignored, are removed."""
        limiter = self._memory_limiter()
        if spare and not hasattr(process, "discarded"):
            limiter.discard(spare)  # not forked by a zygote
        for procs in getattr(process, "discarded", ()):
            limiter.discard(procs)
        cgroup = getattr(process, "cgroup", None)
        if cgroup:
            limiter.adopt(cgroup, inst.token, memory)

    def _learn(self, target: WorkerTarget, modules: list[str]) -> None:
        """An instance reported modules its load / first request imported: let the launcher
        (a zygote) import them now so the next cold start skips them."""
        learn = getattr(self.launcher, "learn", None)
        if learn is not None and not self._closing and learn(target, modules):
            self._background_task(self.launcher.prepare(target, self._prepare_options()))

    def _retire(self, inst: Instance) -> None:
        """Stop ``inst`` in the background after it finishes its in-flight requests."""
        if inst.state == "ready":
            inst.state = "draining"
        task = asyncio.get_running_loop().create_task(inst.stop(self.stop_timeout))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _new_connection(self) -> p.Connection:
        conn = p.Connection()

        def on_hello(ftype: int, obj: Any) -> None:
            inst = self._pending.get(obj.get("token")) if ftype == p.HELLO and isinstance(obj, dict) else None
            if inst is None:
                log.warning("a process connected to the worker socket without a valid token; closing it")
                conn.abort()
                return
            inst.attach(conn)

        conn.on_control = on_hello
        return conn

    # ----------------------------------------------------------------------------- reloads
    async def restart(self, ids: Iterable[str]) -> dict[str, RestartResult]:
        """Replace the instances of the functions ``ids`` (their code changed): forget a
        remembered load error; if the function was in use (an instance, a start, or a load error),
        start a new instance now; new requests wait for it (bounded) while the old instances
        finish their in-flight requests and stop. Unknown ids are ignored. Returns, per id, the
        new instance's ready time or its load error. Never raises for a function's failure."""
        results = {}
        waits = []
        for fid in dict.fromkeys(ids):
            pool = self._pools.get(fid)
            if pool is None:
                continue
            results[fid] = RestartResult(fid)
            was_used = bool(pool.instances) or bool(pool.starting) or pool.load_error is not None
            pool.generation += 1
            pool.load_error = None
            pool.kind = None
            old, pool.instances = pool.instances, []
            pool.starting = set()  # their instances are retired when they come up (generation moved on)
            if was_used and not self._closing:
                waits.append((fid, self._spawn(pool)))
            for inst in old:
                self._retire(inst)
        for fid, task in waits:
            try:
                inst = await asyncio.wait_for(asyncio.shield(task), self.start_timeout)
                results[fid].ready_ms = inst.ready_ms if inst is not None else None
            except FunctionLoadFailed as exc:
                results[fid].error = exc.load_error
            except (WorkerError, asyncio.TimeoutError, asyncio.CancelledError) as exc:
                results[fid].error = exc
        return results

    async def update(self, targets: Iterable[WorkerTarget]) -> set[str]:
        """Make ``targets`` the set of functions: new ids are added (started lazily), missing ids
        are removed (their instances drained and stopped), changed targets (spec, interpreter or
        environment) are restarted. Returns the ids that were restarted."""
        new = {t.id: t for t in targets}
        changed = set()
        for fid in list(self._pools):
            if fid not in new:
                pool = self._pools.pop(fid)
                pool.generation += 1
                for task in list(pool.starting):
                    task.cancel()
                pool.fail_waiters(WorkerError(f"function {fid!r} was removed while the request waited", "reload the page"))
                for inst in pool.instances:
                    self._retire(inst)
        added = []
        for fid, target in new.items():
            pool = self._pools.get(fid)
            if pool is None:
                self._pools[fid] = pool = FunctionPool(target, self.policy)
                added.append(pool)
            else:
                if pool.target != target:
                    changed.add(fid)
                pool.target = target  # limits are not compared: always take the new ones
        if self._server is not None and not self._closing:
            self.launcher.retain(list(new.values()), self.use_uvloop)
            self._warm(added)
        if changed:
            await self.restart(changed)
        return changed

    def kill(self, connection: p.Connection, reason: str) -> bool:
        """SIGKILL the instance behind ``connection`` now (e.g. ``maxDuration`` exceeded: the front
        answers 504 for that request; the instance's other in-flight requests get
        ``WorkerCrashed``). ``reason`` is logged. Returns False if no live instance has it."""
        for inst in self._live:
            if inst.conn is connection:
                log.warning("%s: killing worker %s: %s", inst.target.id, inst.pid, reason)
                inst.kill("duration" if "maxDuration" in reason else None)
                return True
        return False

    # ----------------------------------------------------------------------------- status
    def load_error(self, function_id: str) -> Any:
        """The remembered ``LoadError`` of a function, or None."""
        pool = self._pools.get(function_id)
        return pool.load_error if pool else None

    def spawn_count(self, function_id: str) -> int:
        """How many worker processes were started for the function so far."""
        pool = self._pools.get(function_id)
        return pool.spawn_count if pool else 0

    def status(self) -> dict[str, dict[str, Any]]:
        """Per function id: ``{"instances": [Instance.info()], "starting": int, "queued": int,
        "spawns": int, "cold_starts": int, "kind": str | None, "limits": Limits,
        "load_error": str | None}`` (for health and metrics)."""
        return {
            fid: {
                "instances": [inst.info() for inst in pool.instances],
                "starting": len(pool.starting),
                "queued": sum(1 for w in pool.waiters if not w.done()),
                "spawns": pool.spawn_count,
                "cold_starts": pool.cold_starts,
                "kind": pool.kind,
                "limits": pool.limits,
                "load_error": getattr(pool.load_error, "message", None) if pool.load_error else None,
            }
            for fid, pool in self._pools.items()
        }
