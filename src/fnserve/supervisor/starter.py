"""Starting one worker process: the Unix socket workers connect to, the launcher, the memory
limit's worker options.

``InstanceStarter.open()`` listens on ``<tmpdir>/fnserve-<pid>-<random>/workers.sock`` (first
removing the folders of fnserve processes that are gone: ``sweep_stale_sockets``); ``start(inst, memory)`` launches
the process of an ``Instance`` with a fresh token in its options; the worker connects and says
HELLO with that token, and the connection is attached to the instance (a connection with an
unknown token is closed). ``InstancePools`` decides when to start and what to do once ready.

With ``direct=True`` (``fnserve start``'s direct path) it also listens on ``direct.sock`` in the
same folder (``handoff.DirectChannels``: ``starter.direct``), gives every worker
``options["direct"]`` (its path; forked instances get the same options through their zygote) and
registers each instance there, whose channel is attached by the token it sends.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Coroutine, Mapping
from pathlib import Path
from typing import Any

from ..errors import WorkerError
from ..runtime import protocol as p
from .handoff import DirectChannels
from .instance import Instance
from .launch import Launcher, pid_alive
from .memory import MemoryGuard
from .output import OutputPump
from .reaper import REAPER
from .target import WorkerTarget, instance_confinement

log = logging.getLogger("fnserve.supervisor")

SOCKET_PREFIX = "fnserve-"  # <tmp>/fnserve-<pid>-<random>/workers.sock


def sweep_stale_sockets(tmp: str | os.PathLike[str]) -> list[Path]:
    """Remove the worker socket folders under ``tmp`` (``fnserve-<pid>-*``, ours by uid) whose
    fnserve process is gone (a ``kill -9`` leaves them). Returns the folders removed."""
    removed = []
    uid = os.getuid()
    for folder in Path(tmp).glob(SOCKET_PREFIX + "*"):
        owner = folder.name[len(SOCKET_PREFIX):].split("-", 1)[0]
        try:
            mine = folder.is_dir() and not folder.is_symlink() and folder.stat().st_uid == uid
        except OSError:
            continue
        if mine and owner.isdigit() and int(owner) != os.getpid() and not pid_alive(int(owner)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


class InstanceStarter:
    """Launches instances with ``launcher`` (a ``Launcher``: spawn or zygote fork). ``memory``:
    the supervisor's ``MemoryGuard``; ``heartbeat`` / ``stop_timeout``: s, passed to workers;
    ``use_uvloop``: workers use uvloop when their environment has it; ``rlimits``: resource limits
    of every instance, ``{"nofile": n, "nproc": n}`` (0 or absent: inherited; applied by
    ``fnserve.runtime.containment``); ``direct``: also listen on ``direct.sock`` for the direct
    path's channels (``direct``: the ``DirectChannels``, present either way; ``direct.path`` is
    ``""`` while it does not listen). While open, this process is the instances' subreaper
    (``reaper.REAPER``)."""

    def __init__(self, launcher: Launcher, memory: MemoryGuard, *, heartbeat: float, stop_timeout: float,
                 use_uvloop: bool, rlimits: Mapping[str, int] | None = None, direct: bool = False) -> None:
        self.launcher = launcher
        self.rlimits = {k: int(v) for k, v in (rlimits or {}).items() if v}
        self.memory = memory
        self.heartbeat = heartbeat
        self.stop_timeout = stop_timeout
        self.use_uvloop = use_uvloop
        self.use_direct = direct
        self.direct = DirectChannels()
        self.socket_path = ""
        self._server: Any = None  # asyncio.Server (a uvloop one with uvloop)
        self._dir: str | None = None
        self._pending: dict[str, Instance] = {}  # token → instance waiting for its HELLO
        self._reaping = False  # REAPER.open() was called (close() calls REAPER.close())
        self.output = OutputPump()  # instances' stdout/stderr → the log, in its own thread

    @property
    def is_open(self) -> bool:
        return self._server is not None

    async def open(self, loop: Any) -> None:
        """Listen on a new Unix socket in a private temporary folder (``loop``: the running loop),
        and on ``direct.sock`` there with ``direct``. Raises ``WorkerError`` when ``direct.sock``
        cannot be listened on."""
        tmp = tempfile.gettempdir()
        for folder in sweep_stale_sockets(tmp):
            log.info("removed %s (left by an fnserve that is no longer running)", folder)
        self._dir = tempfile.mkdtemp(prefix=f"{SOCKET_PREFIX}{os.getpid()}-", dir=tmp)
        self.socket_path = os.path.join(self._dir, "workers.sock")
        self._server = await loop.create_unix_server(self._new_connection, self.socket_path)
        if self.use_direct:
            try:
                self.direct.open(loop, self._dir)
            except WorkerError:
                self._server.close()
                self._server = None
                shutil.rmtree(self._dir, ignore_errors=True)
                raise
        REAPER.open()
        self._reaping = True

    async def close(self) -> None:
        """Close the socket and the launcher (zygotes stop)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        self.direct.close()
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
        await self.launcher.close()
        if self._reaping:
            self._reaping = False
            await REAPER.close()  # the last supervisor: what is left of the instances' groups is killed and reaped
        self.output.close()

    def prepare_options(self) -> dict[str, Any]:
        """The options ``Launcher.prepare`` needs (``socket``, ``uvloop``)."""
        return {"socket": self.socket_path, "uvloop": self.use_uvloop}

    def prepare(self, target: WorkerTarget) -> Coroutine[Any, Any, None]:
        """Let the launcher get ready for ``target`` (warm its zygote); a coroutine to run."""
        return self.launcher.prepare(target, self.prepare_options())

    def learn(self, target: WorkerTarget, modules: list[str]) -> bool:
        """An instance of ``target`` imported ``modules`` lazily: True if the launcher wants
        them (then ``prepare`` again: its zygote imports them for the next cold start)."""
        learn = getattr(self.launcher, "learn", None)
        return bool(learn is not None and learn(target, modules))

    async def start(self, inst: Instance, memory: int | None) -> None:
        """Launch ``inst``'s process (options: socket, token, heartbeat, stop timeout, uvloop,
        ``direct`` (the path of ``direct.sock``, with ``direct``), and the memory limiter's for
        ``memory`` MB) and watch it. Its token stays expected until
        ``forget(inst)``. Raises ``WorkerError`` when the interpreter cannot be started."""
        self._pending[inst.token] = inst
        options: dict[str, Any] = {
            "socket": self.socket_path,
            "token": inst.token,
            "heartbeat": self.heartbeat,
            "stop_timeout": self.stop_timeout,
            "uvloop": self.use_uvloop,
            "supervisor": os.getpid(),  # a spawned worker dies with it (PR_SET_PDEATHSIG)
        }
        if self.rlimits:
            options["rlimits"] = self.rlimits
        if self.direct.path:
            options["direct"] = self.direct.path
            self.direct.expect(inst)
        if memory:
            options.update(self.memory.options(inst, memory, bool(getattr(self.launcher, "standby_cgroups", False))))
        target = inst.target
        try:
            options["confine"] = confine = instance_confinement(target, self._dir)  # start: TMPDIR, read-only code
            if confine is not None:
                tmpdir = str(confine["tmpdir"])
                # in a thread: a function that filled its TMPDIR must not stall the event loop
                inst.exited.add_done_callback(lambda _f: asyncio.get_running_loop().run_in_executor(
                    None, functools.partial(shutil.rmtree, tmpdir, ignore_errors=True)))
            process = await self.launcher.launch(target, options)
        except OSError as exc:
            self.direct.discard(inst)
            self.memory.release(inst)
            raise WorkerError(
                f"cannot start {target.python} for {target.id}: {exc}",
                "check that the function's Python interpreter exists and is executable",
            ) from exc
        except BaseException:
            self.direct.discard(inst)
            raise
        if memory:
            self.memory.adopt(inst, process, memory, options.get("standby_cgroup"))
        inst.watch(process, self.output)

    def forget(self, inst: Instance) -> None:
        """Stop expecting ``inst``'s HELLO (it is ready, or its start failed)."""
        self._pending.pop(inst.token, None)

    def _new_connection(self) -> p.Connection:
        conn = p.Connection()

        def on_hello(ftype: int, obj: Any) -> None:
            inst = self._pending.get(str(obj.get("token"))) if ftype == p.HELLO and isinstance(obj, dict) else None
            if inst is None:
                log.warning("a process connected to the worker socket without a valid token; closing it")
                conn.abort()
                return
            inst.attach(conn)

        conn.on_control = on_hello
        return conn
