"""One worker process of one function, as the supervisor sees it."""

from __future__ import annotations

import asyncio
import functools
import logging
import signal
import socket
from collections import deque
from collections.abc import Callable
from typing import Any

from ..runtime import protocol as p
from .launch import WorkerProcess
from .output import OutputPump, pump_reader
from .slottable import SlotTable
from .target import WorkerTarget

log = logging.getLogger("fnserve.supervisor")

STDERR_TAIL = 40  # lines kept to explain a worker that died before it was ready


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def function_logger(function_id: str) -> logging.Logger:
    """``fnserve.function.<id>`` with the ``.py`` suffix dropped (``fnserve.function.api/hello``)."""
    name = function_id[:-3] if function_id.endswith(".py") else function_id
    return logging.getLogger("fnserve.function." + name)


def make_load_error(data: dict[str, Any]) -> Any:
    """A ``fnserve.runtime.failures.LoadError`` from its ``to_dict()`` form (LOAD_ERROR frame meta)."""
    from ..runtime.failures import LoadError

    return LoadError.from_dict(data)


class LoadFailure(Exception):
    """Internal: the instance failed to load; ``load_error`` is the runtime ``LoadError``."""

    def __init__(self, load_error: Any) -> None:
        super().__init__(str(load_error))
        self.load_error = load_error


class Instance:
    """A worker process and its connection.

    ``state``: ``"starting"`` → ``"ready"`` → ``"draining"`` → ``"exited"``. ``ready``: a future
    resolved with the READY meta (``{pid, startup_ms, kind}``) or failed with ``LoadFailure``.
    ``exited``: a future resolved with the exit status. ``inflight``: streams open on the front side.
    ``last_heartbeat``: loop time (s) of the last HEARTBEAT (or of the start). Scaling and limits:
    ``leases`` (requests and direct connections holding a slot), ``served`` (requests so far: frames-path
    leases plus the requests direct connections reported), ``idle_since`` (loop
    time its last request ended, None while busy), ``kind`` (from READY), ``kill_reason``
    (None, "duration", "memory", "heartbeat": why the supervisor killed it), ``failures`` (failed
    requests in a row), ``recycle_at`` (``served`` count it is replaced at, or None), ``peak_rss_mb``,
    ``limit_key`` (its key in the memory limiter, None when it has no cgroup). Direct path
    (``handoff``): ``direct_channel`` (its channel socket or None), ``direct_planned`` (its plan was
    sent), ``direct_conns`` (ids of the client connections passed to it, one lease each). ``pid`` is also its
    process group id: it leads its own group, where whatever the function starts stays unless it
    calls ``setsid``/``setpgid`` (``os.killpg(inst.pid, sig)``; see ``reaper``).
    """

    def __init__(self, target: WorkerTarget, token: str) -> None:
        loop = asyncio.get_running_loop()
        self.key = id(self)
        self.leases = 0
        self.served = 0
        self.idle_since: float | None = None
        self.kind: str | None = None
        self.kill_reason: str | None = None
        self.peak_rss_mb: float | None = None
        self.failures = 0  # failed requests in a row (the function raised or answered 5xx)
        self.recycle_at: int | None = None  # replaced once ``served`` reaches it (max_requests + jitter)
        self.silent_s: float | None = None  # s without a heartbeat when the watchdog killed it
        self.limit_key: str | None = None  # the memory limiter's key while it holds a cgroup for it
        self.on_imported: Any = None  # callable(list of module names) from READY / HEARTBEAT
        self.on_ready: Any = None  # callable(instance), called as READY arrives
        # direct path (``handoff``): callable(instance, frame type, obj) for READY / REPORT / EXPIRED
        self.on_direct: Callable[[Instance, int, Any], None] | None = None
        self.direct_channel: socket.socket | None = None  # its SOCK_SEQPACKET channel, once it sent its token
        self.direct_planned = False  # its DIRECT_PLAN was sent: it may be passed connections
        self.direct_conns: set[int] = set()  # conn ids of the client connections it holds
        self.direct_slots: SlotTable | None = None  # their states, written by the worker (slottable)
        self.direct_limits: Any = None  # its pool's FunctionLimits when it was passed a connection (maxDuration, memory)
        self.target = target
        self.token = token
        self.state = "starting"
        self.process: WorkerProcess | None = None
        self.conn: p.Connection | None = None
        self.pid: int | None = None
        self.ready: asyncio.Future[dict[str, Any]] = loop.create_future()
        self.exited: asyncio.Future[int] = loop.create_future()
        self.started_at = loop.time()
        self.last_heartbeat = self.started_at
        self.ready_ms: float | None = None
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self.flog = function_logger(target.id)
        self._tasks: list[asyncio.Task[None]] = []
        self._outputs: list[asyncio.Future[None]] = []  # resolved at the end of stdout / stderr

    @property
    def inflight(self) -> int:
        """Requests in progress: frames streams, plus requests on passed connections (its slot table)."""
        streams = len(self.conn.streams) if self.conn is not None else 0
        return streams + self.direct_slots.busy() if self.direct_slots is not None else streams

    @property
    def idle_direct(self) -> int:
        """Passed direct-path connections with no request in progress (its slot table): what a
        queued request can reclaim (supervisor.handoff) instead of waiting for a new instance."""
        table = self.direct_slots
        return max(0, len(self.direct_conns) - table.busy()) if table is not None and self.direct_conns else 0

    @property
    def load(self) -> int:
        """Requests on this instance: leases, or open streams when more (``acquire`` users)."""
        streams = len(self.conn.streams) if self.conn is not None else 0
        return self.leases if self.leases >= streams else streams

    @property
    def usable(self) -> bool:
        return self.state == "ready" and self.conn is not None and not self.conn.closed

    # -- wiring
    def attach(self, conn: p.Connection) -> None:
        """Bind the connection that said HELLO with this instance's token."""
        self.conn = conn
        conn.name = self.target.id
        conn.on_control = self._on_control

    def watch(self, process: WorkerProcess, pump: OutputPump | None = None) -> None:
        """Start reading the process's output (its ``output_fds`` in ``pump``'s thread, else its
        stream readers on the loop) and waiting for its exit."""
        self.process = process
        self.pid = process.pid
        loop = asyncio.get_running_loop()
        fds = getattr(process, "output_fds", None)
        if fds is not None and pump is not None:
            for fd, name in zip(fds, ("stdout", "stderr")):
                done: asyncio.Future[None] = loop.create_future()
                self._outputs.append(done)
                pump.add(fd, functools.partial(self._line, name),
                         functools.partial(loop.call_soon_threadsafe, _resolve, done))
        else:
            for reader, name in ((process.stdout, "stdout"), (process.stderr, "stderr")):
                if reader is not None:
                    self._outputs.append(loop.create_task(pump_reader(reader, functools.partial(self._line, name))))
        self._tasks.append(loop.create_task(self._wait_exit()))

    def _on_control(self, ftype: int, obj: Any) -> None:
        loop = asyncio.get_running_loop()
        if isinstance(obj, dict) and obj.get("imported") and self.on_imported is not None:
            self.on_imported(obj["imported"])
        if ftype == p.HEARTBEAT:
            self.last_heartbeat = loop.time()
        elif ftype == p.READY:
            self.last_heartbeat = loop.time()
            if not self.ready.done():
                self.ready_ms = (loop.time() - self.started_at) * 1000
                self.kind = obj.get("kind") if isinstance(obj, dict) else None
                self.idle_since = loop.time()
                self.state = "ready"
                self.ready.set_result(obj)
                if self.on_direct is not None:
                    self.on_direct(self, ftype, obj)  # its plan leaves before anything else
                if self.on_ready is not None:
                    self.on_ready(self)
        elif ftype == p.REPORT or ftype == p.EXPIRED:
            if self.on_direct is not None:
                self.on_direct(self, ftype, obj)
        elif ftype == p.LOAD_ERROR:
            if not self.ready.done():
                self.ready.set_exception(LoadFailure(make_load_error(obj if isinstance(obj, dict) else {})))

    def _line(self, name: str, line: str) -> None:
        """One output line of the process (called in the output thread): the function's log."""
        if name == "stderr":
            self.stderr_tail.append(line)
        flog = self.flog
        if flog.isEnabledFor(logging.INFO):  # makeRecord + handle: Logger.log would walk the stack per line
            extra = {"function": self.target.id, "stream": name, "pid": self.pid}
            flog.handle(flog.makeRecord(flog.name, logging.INFO, __file__, 0, "%s", (line,), None, extra=extra))

    async def _wait_exit(self) -> None:
        assert self.process is not None
        status = await self.process.wait()
        if self._outputs:  # let the last output lines (often a traceback) reach the log first
            await asyncio.wait(self._outputs, timeout=1.0)
        if not self.ready.done():
            self.ready.set_exception(LoadFailure(self._early_exit_error(status)))
            self.ready.exception()  # retrieved: nobody may be waiting any more (start timed out)
        self.state = "exited"
        if self.conn is not None:
            self.conn.abort()  # in-flight streams fail with ConnectionLost → WorkerCrashed
        self.exited.set_result(status)

    def _early_exit_error(self, status: int) -> Any:
        how = f"was killed by signal {-status}" if status < 0 else f"exited with status {status}"
        tail = "\n".join(self.stderr_tail)
        return make_load_error(
            {
                "message": f"{self.target.id}: the worker {how} before the function was ready",
                "file": self.target.id,
                "attr": self.target.spec.get("attr"),
                "found": f"exit status {status}",
                "traceback": tail,
                "hint": "see the output above; the function is retried when its file changes",
            }
        )

    # -- stopping
    async def stop(self, timeout: float) -> int | None:
        """Graceful stop: STOP frame (the worker refuses new streams, finishes in-flight ones
        within ``timeout`` s, runs lifespan shutdown, exits 0); SIGTERM if it has no connection;
        SIGKILL when it is still alive ``timeout + 2`` s later. Returns the exit status."""
        if self.process is None or self.exited.done():
            return self.exited.result() if self.exited.done() else None
        if self.state != "exited":
            self.state = "draining"
        if self.conn is not None and not self.conn.closed:
            self.conn.send_control(p.STOP, {"timeout": timeout})
        else:
            self.process.signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(asyncio.shield(self.exited), timeout + 2.0)
        except asyncio.TimeoutError:
            log.warning("%s: worker %s did not stop within %.1f s; killing it", self.target.id, self.pid, timeout + 2.0)
            self.kill()
            try:
                return await asyncio.wait_for(asyncio.shield(self.exited), 5.0)
            except asyncio.TimeoutError:  # pragma: no cover - a process that survives SIGKILL
                return None

    def kill(self, reason: str | None = None) -> None:
        """SIGKILL the worker now (its in-flight requests get WorkerCrashed). ``reason``
        ("duration", "memory", "heartbeat") is kept in ``kill_reason`` (the first one wins)."""
        if reason and self.kill_reason is None and not self.exited.done():
            self.kill_reason = reason
        if self.process is not None:
            self.process.kill()

    def info(self) -> dict[str, Any]:
        """``{"pid", "state", "inflight", "leases", "ready_ms", "kind", "peak_rss_mb"}`` for status displays."""
        return {"pid": self.pid, "state": self.state, "inflight": self.inflight, "leases": self.leases,
                "ready_ms": self.ready_ms, "kind": self.kind, "peak_rss_mb": self.peak_rss_mb}
