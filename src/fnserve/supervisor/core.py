"""The supervisor: starts, watches, restarts and stops the worker processes of functions.

It knows targets, processes and sockets — never HTTP. The front server asks it for a connection
(``await acquire(function)``) and hands that to ``fnserve.server.upstream.forward``.

Per function (a ``FunctionPool``):
- the first ``acquire`` starts an instance (its cold-start time is logged); concurrent callers
  wait for the same start, each for at most ``start_timeout`` s;
- a crashed instance is dropped; its in-flight requests fail with ``WorkerCrashed`` (502) and the
  next ``acquire`` starts a new one;
- an instance that failed to LOAD (``LOAD_ERROR`` frame, or exit before READY) is not respawned:
  the ``LoadError`` is kept and ``FunctionLoadFailed`` raised for every ``acquire`` until
  ``restart([id])`` (a file changed) or ``update`` with a changed target;
- ``restart(ids)``: new requests wait for a new instance while the old ones finish their
  in-flight requests and stop (zero failed requests across a reload).
All processes live in one event loop; the only background work is per-instance output pumps and
exit watchers, plus an optional heartbeat watchdog.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass
from typing import Any, Iterable

from ..errors import FunctionLoadFailed, WorkerCrashed, WorkerError, WorkerStartTimeout
from ..project.types import Function
from ..runtime import protocol as p
from .instance import Instance, LoadFailure
from .launch import Launcher, SpawnLauncher
from .target import WorkerTarget

log = logging.getLogger("fnserve.supervisor")


@dataclass
class RestartResult:
    """What ``restart`` did for one function: ``ready_ms`` of the new instance (None when no
    instance was started: the function was idle), or ``error`` (the ``LoadError``) if it failed."""

    id: str
    ready_ms: float | None = None
    error: Any = None


class FunctionPool:
    """The instances of one function. Today at most one is ``ready``; the list shape is there so
    issue 6 can scale to several (``pick`` already chooses the least busy)."""

    def __init__(self, target: WorkerTarget) -> None:
        self.target = target
        self.instances: list[Instance] = []
        self.starting: asyncio.Task | None = None
        self.load_error: Any = None
        self.spawn_count = 0
        self.generation = 0

    def pick(self) -> Instance | None:
        best = None
        for inst in self.instances:
            if inst.usable and (best is None or inst.inflight < best.inflight):
                best = inst
        return best


class Supervisor:
    """Worker processes for a set of functions.

    ``targets``: the initial ``WorkerTarget``s (more via ``update``). ``launcher``: the start
    strategy (default ``SpawnLauncher()``). ``start_timeout``: seconds a request waits for a worker
    to become ready. ``stop_timeout``: seconds an instance gets to finish in-flight requests when
    stopped. ``heartbeat``: seconds between worker heartbeats; ``heartbeat_timeout``: kill an
    instance silent for that long (None: never). ``use_uvloop``: workers use uvloop when their
    environment has it. Use ``async with Supervisor(...)`` or call ``shutdown()``.
    """

    def __init__(
        self,
        targets: Iterable[WorkerTarget] = (),
        *,
        launcher: Launcher | None = None,
        start_timeout: float = 30.0,
        stop_timeout: float = 10.0,
        heartbeat: float = 1.0,
        heartbeat_timeout: float | None = None,
        use_uvloop: bool = True,
    ) -> None:
        self.launcher = launcher or SpawnLauncher()
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.heartbeat = heartbeat
        self.heartbeat_timeout = heartbeat_timeout
        self.use_uvloop = use_uvloop
        self._pools: dict[str, FunctionPool] = {t.id: FunctionPool(t) for t in targets}
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
        """Open the Unix socket workers connect to (idempotent; ``acquire`` calls it)."""
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
            if self.heartbeat_timeout:
                self._watchdog = loop.create_task(self._watch_heartbeats())

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop every instance gracefully (each gets ``timeout`` s, default ``stop_timeout``, to
        finish in-flight requests; then SIGKILL), close the socket. ``acquire`` fails afterwards."""
        self._closing = True
        timeout = self.stop_timeout if timeout is None else timeout
        for pool in self._pools.values():
            if pool.starting is not None:
                pool.starting.cancel()
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

    # ----------------------------------------------------------------------------- requests
    async def acquire(self, function: Function | str) -> p.Connection:
        """A connection to a ready instance of ``function`` (a ``Function`` or its id), starting
        one if none runs. Give it to ``fnserve.server.upstream.forward`` right away.

        Raises ``FunctionLoadFailed`` (500: the function does not import; carries the LoadError
        with its traceback), ``WorkerStartTimeout`` (not ready within ``start_timeout`` s),
        ``WorkerCrashed`` (it died right after starting, twice), ``WorkerError`` (unknown function,
        interpreter cannot be started, or the supervisor is shutting down).
        """
        fid = function if isinstance(function, str) else function.id
        pool = self._pools.get(fid)
        if pool is None:
            raise WorkerError(f"no function {fid!r} is known to the supervisor", "call update() with the project's functions")
        inst = pool.pick()
        if inst is not None:
            return inst.conn  # type: ignore[return-value]
        for _ in range(3):
            if self._closing:
                raise WorkerError("the server is shutting down", "retry on another server")
            if self._pools.get(fid) is not pool:
                raise WorkerError(f"function {fid!r} was removed while the request waited", "reload the page")
            if pool.load_error is not None:
                raise FunctionLoadFailed(fid, pool.load_error)
            inst = pool.pick()
            if inst is not None:
                return inst.conn  # type: ignore[return-value]
            if pool.starting is None:
                pool.starting = asyncio.get_running_loop().create_task(self._start(pool))
            task = pool.starting
            try:
                await asyncio.wait_for(asyncio.shield(task), self.start_timeout)
            except asyncio.TimeoutError:
                raise WorkerStartTimeout(fid, self.start_timeout) from None
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # we were cancelled ourselves
                # the start we waited for was cancelled (shutdown, update): the loop says why
        raise WorkerCrashed(fid)

    async def _start(self, pool: FunctionPool) -> Instance | None:
        """Start one instance of ``pool``'s function and add it to the pool when ready."""
        generation = pool.generation
        this = asyncio.current_task()
        try:
            try:
                inst = await self._launch(pool)
            except LoadFailure as exc:
                if pool.generation == generation:
                    pool.load_error = exc.load_error
                    log.error(
                        "%s failed to load: %s\n%s", pool.target.id,
                        getattr(exc.load_error, "message", exc), getattr(exc.load_error, "traceback", ""),
                    )
                    raise FunctionLoadFailed(pool.target.id, exc.load_error) from None
                return None
            if pool.generation != generation or self._closing or self._pools.get(pool.target.id) is not pool:
                self._retire(inst)  # superseded while starting
                return None
            pool.instances.append(inst)
            return inst
        finally:
            if pool.starting is this:
                pool.starting = None

    async def _launch(self, pool: FunctionPool) -> Instance:
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
        try:
            try:
                process = await self.launcher.launch(target, options)
            except OSError as exc:
                raise WorkerError(
                    f"cannot start {target.python} for {target.id}: {exc}",
                    "check that the function's Python interpreter exists and is executable",
                ) from exc
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
            "%s: worker %s ready in %.1f ms (cold start; import + startup %.1f ms)",
            target.id, inst.pid, inst.ready_ms or 0.0, float(meta.get("startup_ms", 0.0)),
        )
        return inst

    def _on_exit(self, inst: Instance) -> None:
        self._live.discard(inst)
        status = inst.exited.result()
        pool = self._pools.get(inst.target.id)
        if pool is not None and inst in pool.instances:
            pool.instances.remove(inst)
            if not self._closing:
                how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
                log.warning(
                    "%s: worker %s %s; its in-flight requests failed (502); the next request starts a new one",
                    inst.target.id, inst.pid, how,
                )

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
            was_used = bool(pool.instances) or pool.starting is not None or pool.load_error is not None
            pool.generation += 1
            pool.load_error = None
            old, pool.instances = pool.instances, []
            if pool.starting is not None:
                pool.starting = None  # its instance is retired when it comes up (generation moved on)
            if was_used and not self._closing:
                pool.starting = asyncio.get_running_loop().create_task(self._start(pool))
                waits.append((fid, pool.starting))
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
                if pool.starting is not None:
                    pool.starting.cancel()
                for inst in pool.instances:
                    self._retire(inst)
        for fid, target in new.items():
            pool = self._pools.get(fid)
            if pool is None:
                self._pools[fid] = FunctionPool(target)
            elif pool.target != target:
                pool.target = target
                changed.add(fid)
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
                inst.kill()
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
        """``{id: {"instances": [{pid, state, inflight, ready_ms}], "spawns": int, "load_error": str | None}}``."""
        return {
            fid: {
                "instances": [inst.info() for inst in pool.instances],
                "spawns": pool.spawn_count,
                "load_error": getattr(pool.load_error, "message", None) if pool.load_error else None,
            }
            for fid, pool in self._pools.items()
        }

    async def _watch_heartbeats(self) -> None:
        assert self.heartbeat_timeout is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(min(self.heartbeat_timeout / 2, 1.0))
            now = loop.time()
            for inst in list(self._live):
                if inst.state == "ready" and now - inst.last_heartbeat > self.heartbeat_timeout:
                    log.error(
                        "%s: worker %s sent no heartbeat for %.1f s (its event loop is blocked); killing it",
                        inst.target.id, inst.pid, now - inst.last_heartbeat,
                    )
                    inst.kill()
