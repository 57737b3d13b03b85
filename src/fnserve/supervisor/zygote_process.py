"""One zygote process as the supervisor sees it (``ZygoteProcess``) and the instances it forks
(``ForkedProcess``); the protocol is in ``fnserve/runtime/zygote.py``, the decisions in
``fnserve.supervisor.zygote_launcher``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Mapping
from typing import Any

from .launch import PRIVATE_NAME, RUNTIME_DIR, WorkerProcess
from .output import pump_reader
from .reaper import REAPER
from .target import WorkerTarget, python_options

log = logging.getLogger("fnserve.supervisor.zygote_launcher")

ZYGOTE_BOOTSTRAP = (
    "import importlib.util as u,sys\n"
    "d=sys.argv[1];n=%r\n"
    "s=u.spec_from_file_location(n,d+'/__init__.py',submodule_search_locations=[d])\n"
    "m=u.module_from_spec(s);sys.modules[n]=m;s.loader.exec_module(m)\n"
    "del u,s,m\n"
    "from _fnserve_runtime.zygote import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
) % PRIVATE_NAME



class ZygoteError(Exception):
    """Internal: the zygote could not start, or died; the launcher falls back or retries."""


class ForkedProcess(WorkerProcess):
    """A worker forked by a zygote: the ``WorkerProcess`` interface, with the zygote as its parent.
    The zygote reaps it (SIGKILLing its process group first) and reports its status
    (``{"op": "exit"}`` → ``watch.finish``); if the zygote dies first, the instance is reparented
    to us (the subreaper) and keeps running: ``watch.take_over()`` makes us reap it.
    ``fork_ms``: the fork's duration in the zygote; ``cgroup``: the spare cgroup its standby
    joined ahead, or None; ``discarded``: spares that will never be used."""

    def __init__(self, pid: int, output_fds: tuple[int, int], fork_ms: float = 0.0) -> None:
        super().__init__(pid, output_fds, reap=False)
        self.fork_ms = fork_ms
        self.cgroup: str | None = None
        self.discarded: list[str] = []


class ZygoteProcess:
    """One zygote process and its control socket. ``info``: its ready message (``preloaded``,
    ``failed``, ``threads``, ``import_ms``); ``pid``; ``control_fd``: the control socket's number
    inside the zygote (tests check children do not have it)."""

    def __init__(self, target: WorkerTarget, preload: tuple[str, ...], use_uvloop: bool, socket_path: str = "",
                 standby: bool = True) -> None:
        self.target = target
        self.preload = preload
        self.use_uvloop = use_uvloop
        self.socket_path = socket_path
        self.standby = standby
        self.info: dict[str, Any] = {}
        self.loaded: set[str] = set()
        self.failed: dict[str, str] = {}  # module → error (optional ones included)
        self.pid: int | None = None
        self.control_fd = -1
        self.alive = False
        self._proc: asyncio.subprocess.Process | None = None
        self._sock: socket.socket | None = None
        self._replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._ready: asyncio.Future[dict[str, Any]] | None = None
        self.retiring = False  # close once its last child exited (no function uses it any more)
        self._next = 0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout: float) -> None:
        """Start the zygote and wait (at most ``timeout`` s) for its ready message. Raises ``ZygoteError``."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control_fd = theirs.fileno()
        config = {"control_fd": self.control_fd, "preload": list(self.preload), "uvloop": self.use_uvloop,
                  "socket": self.socket_path, "standby": self.standby,
                  "dumpable": not self.target.confine}  # fnserve start: instances cannot read the zygote's memory
        target = self.target
        try:
            self._proc = await asyncio.create_subprocess_exec(
                str(target.python), *python_options(target), "-c", ZYGOTE_BOOTSTRAP, str(RUNTIME_DIR), json.dumps(config),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                env=dict(target.env), cwd=str(target.cwd) if target.cwd else None,
                start_new_session=True, pass_fds=(self.control_fd,),
            )
        except OSError as exc:
            ours.close()
            raise ZygoteError(f"cannot start {target.python}: {exc}") from exc
        finally:
            theirs.close()
        self.pid = self._proc.pid
        REAPER.ignore(self.pid)  # asyncio waits for the zygote itself
        REAPER.family(self.pid)  # its session: zombies left in it are ours to reap
        self.alive = True
        ours.setblocking(False)
        self._sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        for stream in (self._proc.stdout, self._proc.stderr):
            self._tasks.append(loop.create_task(self._pump(stream)))
        self._tasks.append(loop.create_task(self._reaped(self._proc)))
        try:
            self.info = await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except asyncio.TimeoutError:
            await self.close(0.0)
            raise ZygoteError(f"the zygote did not finish its imports within {timeout:g} s") from None
        self._note(self.info)

    def _note(self, info: Mapping[str, Any]) -> None:
        self.loaded.update(info.get("preloaded", ()))
        self.failed.update(info.get("failed", {}))
        self.failed.update(info.get("optional_failed", {}))

    def missing(self, names: tuple[str, ...]) -> list[str]:
        """Of ``names`` (``"x?"`` = optional), those neither imported nor tried yet."""
        return [n for n in names if n.rstrip("?") not in self.loaded and n.rstrip("?") not in self.failed]

    async def load_more(self, names: list[str], timeout: float) -> dict[str, Any]:
        """Have the zygote import ``names`` now (later children get them). Raises ``ZygoteError``."""
        reply = await self._request({"op": "preload", "names": names}, [], timeout)
        self._note(reply)
        return reply

    async def _request(self, message: dict[str, Any], fds: list[int], timeout: float) -> dict[str, Any]:
        if not self.alive or self._sock is None:
            raise ZygoteError("the zygote is not running")
        self._next += 1
        rid = message["id"] = self._next
        future = asyncio.get_running_loop().create_future()
        self._replies[rid] = future
        try:
            socket.send_fds(self._sock, [json.dumps(message).encode()], fds)
        except OSError as exc:
            self._replies.pop(rid, None)
            raise ZygoteError(f"cannot talk to the zygote: {exc}") from exc
        try:
            return await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            self._replies.pop(rid, None)
            raise ZygoteError(f"the zygote did not answer within {timeout:g} s") from None

    @staticmethod
    async def _reaped(proc: asyncio.subprocess.Process) -> None:
        await proc.wait()
        REAPER.unignore(proc.pid)

    async def _pump(self, stream: asyncio.StreamReader | None) -> None:
        if stream is not None:
            await pump_reader(stream, lambda line: log.info("zygote %s: %s", self.pid, line.rstrip()))

    def _on_readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._died()
                return
            msg = json.loads(data)
            op = msg.get("op")
            if op == "exit":  # the zygote reaped a child (after SIGKILLing its process group)
                child = self._children.pop(int(msg["pid"]), None)
                if child is not None:
                    child.watch.finish(int(msg["status"]))
                if self.retiring and not self._children:
                    self._tasks.append(asyncio.get_running_loop().create_task(self.close()))
            elif op == "standby":  # a pre-forked child: its zombie is ours to reap if the zygote dies
                REAPER.family(int(msg["pid"]))
            elif op in ("forked", "preloaded"):
                future = self._replies.pop(int(msg.get("id", -1)), None)
                if future is not None and not future.done():
                    future.set_result(msg)
            elif op == "ready" and self._ready is not None and not self._ready.done():
                self._ready.set_result(msg)

    def _died(self) -> None:
        """The control socket closed: the zygote is gone (or we closed it). Its instances live
        on, reparented to us (the subreaper): we reap them from now on. (Its standby dies with
        it: ``PR_SET_PDEATHSIG``; the reaper's sweep reaps it.)"""
        if not self.alive:
            return
        self.alive = False
        loop = asyncio.get_running_loop()
        if self._sock is not None:
            loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
        error = ZygoteError(f"the zygote {self.pid} exited")
        for future in self._replies.values():
            if not future.done():
                future.set_exception(error)
        self._replies.clear()
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(error)
        for child in self._children.values():
            child.watch.take_over()
        self._children.clear()
        REAPER.sweep_soon()

    async def fork(self, spec: Mapping[str, Any], options: Mapping[str, Any], timeout: float = 10.0) -> ForkedProcess:
        """Fork one instance running the worker main with ``spec`` / ``options``. Raises ``ZygoteError``."""
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        try:
            reply = await self._request({"op": "fork", "spec": dict(spec), "options": dict(options)}, [out_w, err_w], timeout)
        except BaseException:
            os.close(out_r)
            os.close(err_r)
            raise
        finally:
            os.close(out_w)
            os.close(err_w)
        if "pid" not in reply:
            os.close(out_r)
            os.close(err_r)
            raise ZygoteError(f"the zygote could not fork: {reply.get('error')}")
        child = ForkedProcess(int(reply["pid"]), (out_r, err_r), float(reply.get("fork_ms", 0.0)))
        child.cgroup = reply.get("cgroup") or None  # a spare cgroup the standby joined ahead
        child.discarded = list(reply.get("discarded") or ())  # spares that will never be used
        self._children[child.pid] = child
        return child

    async def close(self, timeout: float = 5.0) -> None:
        """Tell the zygote to exit and close the control socket (its running instances keep
        running: we reap them); SIGKILL it after ``timeout`` s."""
        if self.alive and self._sock is not None:
            with contextlib.suppress(OSError):  # without it, EOF means "the front died": it kills its children
                self._sock.send(json.dumps({"op": "exit"}).encode())
        self._died()
        if self._proc is not None and self._proc.returncode is None:
            try:
                await asyncio.wait_for(self._proc.wait(), timeout)
            except asyncio.TimeoutError:
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                await self._proc.wait()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

