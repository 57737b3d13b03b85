"""Zygote cold starts (SPEC §9): instances forked from a pre-warmed process.

``ZygoteLauncher`` (also exported as ``ForkLauncher``) keeps one zygote per (interpreter,
environment, working directory, uvloop): a process running ``fnserve/runtime/zygote.py`` that has
already imported the top-level imports of the functions it serves (``preload_modules``: an ``ast``
scan of the entry file, following project-local helper modules, keeping third-party and stdlib
names only). Functions sharing an environment share its zygote: a function needing modules the
zygote has not imported yet asks it to import them first (the union grows; one copy of FastAPI in
memory for all the functions of a project). A new instance is ``os.fork()``ed from it and then runs
the ordinary worker main (imports the user module, connects to the supervisor, sends READY), so a
cold start costs the fork and the user module's own code, not the import of FastAPI.

Decisions:
- control channel: a ``SOCK_SEQPACKET`` socket pair (no path on disk, nobody else can connect);
- output: the supervisor creates two pipes per instance and passes their write ends with
  ``SCM_RIGHTS``; the child puts them on fds 1/2. Output is attributable per instance exactly as for
  spawned workers (``Instance`` reads the read ends);
- exit status: forked children are the zygote's, not ours; the zygote reaps them and reports
  ``{"op": "exit", "pid", "status"}``. Signals go to the child's process group (it runs
  ``setsid``). If the zygote dies, its children are SIGKILLed (``PR_SET_PDEATHSIG`` and by us) and
  reported killed; the next launch starts a new zygote;
- learning: an instance reports the non-project modules its load and first request imported
  (``imported`` in READY / its first HEARTBEAT; FastAPI imports ``pydantic.v1`` lazily when it
  analyses a route: ~20 ms); the zygote imports them too, so later cold starts skip them;
- standby (Android's USAP pool): the zygote keeps one pre-forked child, already cleaned, with its
  event loop created and connected to the supervisor's socket; a fork request is an assignment to
  it (spec, options, output pipes) and the next standby is forked 50 ms later, off the critical
  path. A standby made before new imports is replaced;
- retirement: ``update`` retires zygotes no function uses any more (environment changed); each
  exits once its last instance has (children die with their zygote: ``PR_SET_PDEATHSIG``);
- fallback: no ``os.fork`` / ``socket.send_fds``, or a zygote that could not start or runs
  threads after its imports: ``SpawnLauncher`` for every function of that environment; a function
  one of whose (non-optional) imports fails in the zygote: ``SpawnLauncher`` for that function
  (it then reports its own load error as usual). One warning each.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
from typing import Any, Mapping

from .imports import preload_modules
from .launch import PRIVATE_NAME, RUNTIME_DIR, Launcher, SpawnLauncher
from .target import WorkerTarget

log = logging.getLogger("fnserve.supervisor.zygote")

ZYGOTE_BOOTSTRAP = (
    "import importlib.util as u,sys\n"
    "d=sys.argv[1];n=%r\n"
    "s=u.spec_from_file_location(n,d+'/__init__.py',submodule_search_locations=[d])\n"
    "m=u.module_from_spec(s);sys.modules[n]=m;s.loader.exec_module(m)\n"
    "del u,s,m\n"
    "from _fnserve_runtime.zygote import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
) % PRIVATE_NAME

__all__ = ["ForkLauncher", "ForkedProcess", "Zygote", "ZygoteError", "ZygoteLauncher", "preload_modules"]


class ZygoteError(Exception):
    """Internal: the zygote could not start, or died; the launcher falls back or retries."""


class ForkedProcess:
    """A worker forked by a zygote; the ``WorkerProcess`` interface (``pid``, ``stdout``, ``stderr``,
    ``returncode``, ``await wait()``, ``signal``, ``kill``) without being our child."""

    def __init__(self, pid: int, stdout: asyncio.StreamReader, stderr: asyncio.StreamReader) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.returncode: int | None = None
        self.cgroup: str | None = None
        self.discarded: list[str] = []
        self._exited: asyncio.Future = asyncio.get_running_loop().create_future()

    def _set_exit(self, status: int) -> None:
        if self.returncode is None:
            self.returncode = status
            if not self._exited.done():
                self._exited.set_result(status)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def signal(self, signum: int) -> None:
        if self.returncode is not None:
            return
        try:
            os.killpg(self.pid, signum)
        except ProcessLookupError:  # not yet in its own group (just forked): the process itself
            try:
                os.kill(self.pid, signum)
            except (ProcessLookupError, PermissionError):
                pass
        except PermissionError:
            pass

    def kill(self) -> None:
        self.signal(signal.SIGKILL)


async def _pipe_reader(fd: int) -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(loop=loop)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), os.fdopen(fd, "rb", 0))
    return reader


class Zygote:
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
        self._replies: dict[int, asyncio.Future] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._ready: asyncio.Future | None = None
        self.retiring = False  # close once its last child exited (no function uses it any more)
        self._next = 0
        self._tasks: list[asyncio.Task] = []

    async def start(self, timeout: float) -> None:
        """Start the zygote and wait (at most ``timeout`` s) for its ready message. Raises ``ZygoteError``."""
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.control_fd = theirs.fileno()
        config = {"control_fd": self.control_fd, "preload": list(self.preload), "uvloop": self.use_uvloop,
                  "socket": self.socket_path, "standby": self.standby}
        target = self.target
        try:
            self._proc = await asyncio.create_subprocess_exec(
                str(target.python), "-I", "-u", "-c", ZYGOTE_BOOTSTRAP, str(RUNTIME_DIR), json.dumps(config),
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
        self.alive = True
        ours.setblocking(False)
        self._sock = ours
        self._ready = loop.create_future()
        loop.add_reader(ours.fileno(), self._on_readable)
        for stream in (self._proc.stdout, self._proc.stderr):
            self._tasks.append(loop.create_task(self._pump(stream)))
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

    async def _pump(self, stream: asyncio.StreamReader | None) -> None:
        while stream is not None:
            line = await stream.readline()
            if not line:
                return
            log.info("zygote %s: %s", self.pid, line.decode("utf-8", "replace").rstrip())

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
            if op == "exit":
                child = self._children.pop(int(msg["pid"]), None)
                if child is not None:
                    child._set_exit(int(msg["status"]))
                if self.retiring and not self._children:
                    self._tasks.append(asyncio.get_running_loop().create_task(self.close()))
            elif op in ("forked", "preloaded"):
                future = self._replies.pop(int(msg.get("id", -1)), None)
                if future is not None and not future.done():
                    future.set_result(msg)
            elif op == "ready" and self._ready is not None and not self._ready.done():
                self._ready.set_result(msg)

    def _died(self) -> None:
        """The control socket closed: the zygote is gone. Its children die with it (pdeathsig);
        make sure, and report them killed."""
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
            child.kill()
            child._set_exit(-signal.SIGKILL)
        self._children.clear()

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
        child = ForkedProcess(int(reply["pid"]), await _pipe_reader(out_r), await _pipe_reader(err_r))
        child.fork_ms = float(reply.get("fork_ms", 0.0))  # type: ignore[attr-defined]
        child.cgroup = reply.get("cgroup") or None  # a spare cgroup the standby joined ahead
        child.discarded = list(reply.get("discarded") or ())  # spares that will never be used
        self._children[child.pid] = child
        return child

    async def close(self, timeout: float = 5.0) -> None:
        """Close the control socket (the zygote exits); SIGKILL it after ``timeout`` s."""
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


class ZygoteLauncher(Launcher):
    """Fork instances from a pre-warmed zygote (module docstring). ``preload``: callable
    ``target -> tuple of module names`` (default ``preload_modules``); ``zygote_timeout``: s for a
    zygote's imports; ``fallback``: the launcher used where forking is not possible
    (default ``SpawnLauncher()``). ``prepare(target)`` starts the zygote (and imports what the
    function needs) ahead of its first request; ``Supervisor.start``/``update`` call it."""

    name = "zygote"
    standby_cgroups = True  # the supervisor may pass "standby_cgroup" (a spare) in launch options

    def __init__(self, *, preload: Any = None, zygote_timeout: float = 60.0, fallback: Launcher | None = None,
                 standby: bool = True) -> None:
        self.preload = preload or preload_modules
        self.standby = standby
        self.zygote_timeout = zygote_timeout
        self.fallback = fallback or SpawnLauncher()
        self.zygotes: dict[tuple, Zygote] = {}
        self._failed: dict[tuple, str] = {}  # zygote key → why that environment spawns
        self._spawn_only: dict[tuple, str] = {}  # (function id, *required modules) → why it spawns
        self._locks: dict[tuple, asyncio.Lock] = {}
        self._learned: dict[str, set[str]] = {}  # function id → modules its instances imported
        self._retired: list[Zygote] = []  # closing once their last instance ends
        self._scans: dict[tuple, tuple[str, ...]] = {}
        self.supported = hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET")

    @staticmethod
    def key(target: WorkerTarget, use_uvloop: bool = True) -> tuple:
        """What must be equal for two instances to share a zygote."""
        return (str(target.python), tuple(sorted(target.env.items())), str(target.cwd), bool(use_uvloop))

    async def zygote_for(self, target: WorkerTarget, use_uvloop: bool = True, socket_path: str = "") -> Zygote | None:
        """The running zygote for ``target``, started and given the function's imports if needed,
        or None (spawn instead)."""
        if not self.supported:
            return None
        key = self.key(target, use_uvloop)
        needed = self.needed(target)
        required = (target.id,) + tuple(n for n in needed if not n.endswith("?"))
        if key in self._failed or required in self._spawn_only:
            return None
        async with self._locks.setdefault(key, asyncio.Lock()):
            if key in self._failed or required in self._spawn_only:
                return None  # decided while we waited for the lock
            zygote = self.zygotes.get(key)
            if zygote is None or not zygote.alive:
                zygote = Zygote(target, needed, use_uvloop, socket_path, self.standby)
                try:
                    await zygote.start(self.zygote_timeout)
                except ZygoteError as exc:
                    return self._give_up(key, target, str(exc))
                self.zygotes[key] = zygote
                log.info("zygote %s ready for %s (preloaded %s in %.0f ms)", zygote.pid, target.id,
                         ", ".join(sorted(zygote.loaded)) or "nothing", float(zygote.info.get("import_ms", 0)))
                info = zygote.info
            else:
                missing = zygote.missing(needed)
                info = {}
                if missing:
                    try:
                        info = await zygote.load_more(missing, self.zygote_timeout)
                    except ZygoteError as exc:
                        await zygote.close(1.0)
                        return self._give_up(key, target, str(exc))
                    log.info("zygote %s: imported %s for %s", zygote.pid, ", ".join(missing), target.id)
            if int(info.get("threads", 1)) > 1:
                self._retire(key, zygote)  # its running instances keep running; no new forks
                return self._give_up(key, target, f"{info['threads']} threads run after its imports (forking would be unsafe)")
            failed = {n: zygote.failed[n] for n in needed if not n.endswith("?") and n in zygote.failed}
            if failed:
                why = "its imports failed in the zygote: " + "; ".join(f"{k}: {v}" for k, v in failed.items())
                self._spawn_only[required] = why
                log.warning("%s: %s; its instances start as fresh interpreters", target.id, why)
                return None
            return zygote

    def needed(self, target: WorkerTarget) -> tuple[str, ...]:
        """What the zygote must have imported for ``target``: the preload scan (cached per entry
        file version) plus what its instances reported importing (optional: ``"name?"``)."""
        path = target.spec.get("path") or ""
        try:
            version = os.stat(path).st_mtime_ns
        except OSError:
            version = 0
        scan_key = (target.id, path, version, tuple(target.spec.get("import_roots") or ()))
        scanned = self._scans.get(scan_key)
        if scanned is None:
            scanned = self._scans[scan_key] = tuple(self.preload(target))
        learned = self._learned.get(target.id)
        return scanned + tuple(sorted(f"{m}?" for m in learned)) if learned else scanned

    def learn(self, target: WorkerTarget, modules: list[str]) -> bool:
        """Remember ``modules`` an instance of ``target`` imported while loading or serving its
        first request (``runtime.worker``: READY/HEARTBEAT ``imported``); True if any is new (the
        supervisor then calls ``prepare`` so the zygote imports them before the next cold start)."""
        known = self._learned.setdefault(target.id, set())
        new = set(modules) - known
        known.update(new)
        return bool(new) and self.supported

    def _give_up(self, key: tuple, target: WorkerTarget, why: str) -> None:
        self._failed[key] = why
        self.zygotes.pop(key, None)
        log.warning("%s: no zygote: %s; instances of its environment start as fresh interpreters "
                    "(slower cold starts)", target.id, why)
        return None

    async def prepare(self, target: WorkerTarget, options: Mapping[str, Any] | None = None) -> None:
        options = options or {}
        await self.zygote_for(target, bool(options.get("uvloop", True)), str(options.get("socket") or ""))

    async def launch(self, target: WorkerTarget, options: Mapping[str, Any]) -> Any:
        use_uvloop = bool(options.get("uvloop", True))
        for _ in range(2):  # a zygote that died is replaced once
            zygote = await self.zygote_for(target, use_uvloop, str(options.get("socket") or ""))
            if zygote is None:
                break
            try:
                return await zygote.fork(target.spec, options)
            except ZygoteError as exc:
                log.warning("%s: zygote %s failed (%s); starting a new one", target.id, zygote.pid, exc)
                await zygote.close(1.0)
        return await self.fallback.launch(target, options)

    def retain(self, targets: list[WorkerTarget], use_uvloop: bool = True) -> None:
        """Retire the zygotes no target of ``targets`` uses (an environment changed): each closes
        when its last instance has exited (its children die with it)."""
        keep = {self.key(t, use_uvloop) for t in targets}
        for key in [k for k in self.zygotes if k not in keep]:
            self._retire(key, self.zygotes[key])

    def _retire(self, key: tuple, zygote: Zygote) -> None:
        if self.zygotes.get(key) is zygote:
            del self.zygotes[key]
        zygote.retiring = True
        self._retired.append(zygote)
        if not zygote._children:
            zygote._tasks.append(asyncio.get_running_loop().create_task(zygote.close()))

    async def close(self) -> None:
        zygotes, self.zygotes = list(self.zygotes.values()) + self._retired, {}
        self._retired = []
        await asyncio.gather(*(z.close() for z in zygotes), return_exceptions=True)
        await self.fallback.close()


ForkLauncher = ZygoteLauncher
