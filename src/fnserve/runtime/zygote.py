"""The zygote: a pre-warmed process that forks function instances (SPEC §9 cold starts).

Runs in the function's own environment and Python (3.9–3.13), stdlib only, loaded under the
private package name like the worker. Started by ``fnserve.supervisor.zygote_launcher.ZygoteLauncher``::

    python -I -u -c ZYGOTE_BOOTSTRAP <runtime dir> <config JSON>

``config``: ``{"control_fd": int, "preload": [module names; "name?" = optional, its failure is
ignored], "uvloop": bool}``.
``control_fd`` is this end of a ``SOCK_SEQPACKET`` socket pair (one message = one JSON object,
plus file descriptors passed with ``SCM_RIGHTS``):

- zygote → supervisor, once: ``{"op": "ready", "pid", "preloaded": [names], "failed": {name:
  error}, "threads": int, "import_ms": float}`` (``threads`` > 1 means forking is unsafe);
- supervisor → zygote: ``{"op": "preload", "id": n, "names": [...]}`` imports more modules (for
  a function whose imports are not all loaded yet); answered by ``{"op": "preloaded", "id": n,
  ...}`` with the ready message's fields. Only later children see them;
- supervisor → zygote: ``{"op": "fork", "id": n, "spec": {...}, "options": {...}}`` with two fds:
  the write ends of the new instance's stdout and stderr pipes (per-instance output stays
  attributable, exactly as with a spawned worker);
- zygote → supervisor: ``{"op": "forked", "id": n, "pid": int, "fork_ms": float}`` (or ``"error"``),
  later ``{"op": "exit", "pid": int, "status": int}`` when that child ends (negative: killed by that
  signal). The zygote is the children's parent, so it reaps them and reports their status; each
  child leads its own process group, which the zygote SIGKILLs before reaping the child (the
  zombie keeps the group id from being reused), so what a function started dies with it;
- zygote → supervisor: ``{"op": "standby", "pid": int}`` for each pre-forked standby child;
- supervisor → zygote: ``{"op": "exit"}``, then EOF: the zygote exits; its instances keep running
  (they are reparented to the supervisor, a child subreaper, which reaps them from then on).
- EOF without ``exit``: the supervisor died. The zygote SIGKILLs its instances' process groups
  (their death signal: they do not die with the zygote itself) and exits.

Fork safety: the zygote runs no thread (checked after the imports, reported in ``threads``), its
imported objects are moved out of the garbage collector's reach with ``gc.freeze()`` (so children
do not dirty the shared pages by collecting them). A preloaded FastAPI or Flask is warmed with a
throwaway app served one request (``zygote_child.warm_frameworks``, thread-free), in the zygote
(caches) and again in each standby (page faults taken before the assignment). In the child: a new session (own process group),
stdout/stderr onto the instance's pipes, every other inherited descriptor closed (the control
socket included), signal dispositions reset, ``random`` reseeded (``os.register_at_fork`` handlers
run too), root logging handlers dropped (a fresh interpreter has none), then the normal worker main.
"""

import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any, Dict, List, Set, Union

from . import worker
from .bytecode import keep_installed_bytecode_in_place
from .confine import set_dumpable
from .containment import libc_prctl
from .zygote_child import child_main, standby_main, warm_frameworks

MAX_MESSAGE = 1 << 20
STANDBY_DELAY = 0.05  # s after an assignment before the next standby is forked
SETTLE_TIMEOUT = 0.5  # s to wait for threads started and ended at import to be gone

# Modules frameworks import lazily on their first request (measured: FastAPI's first request costs
# ~19 ms importing anyio's asyncio backend). Imported in the zygote when the key module is loaded.
WARM_UP = {
    "anyio": ("anyio._backends._asyncio", "anyio.streams.memory", "anyio.streams.stapled", "anyio.streams.tls", "queue"),
    "werkzeug": ("encodings.idna",),
}


def _log(message: str) -> None:
    sys.stderr.write("[fnserve zygote %d] %s\n" % (os.getpid(), message))
    sys.stderr.flush()


def _send(ctrl: socket.socket, obj: Dict[str, Any]) -> None:
    ctrl.sendall(json.dumps(obj, separators=(",", ":")).encode())


def _thread_count() -> int:
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        import threading

        return threading.active_count()


def _settle_threads(timeout: float = SETTLE_TIMEOUT) -> int:
    """The thread count once threads a module started and ended at import are gone (an OS
    thread outlives its ``join()`` by a moment; ``asyncio.run`` joins its executor's): polls up
    to ``timeout`` s while more than one thread runs. Returns the last count."""
    deadline = time.monotonic() + timeout
    count = _thread_count()
    while count > 1 and time.monotonic() < deadline:
        time.sleep(0.005)
        count = _thread_count()
    return count


def _preload(names: List[str], use_uvloop: bool) -> Dict[str, Any]:
    started = time.perf_counter()
    from . import loader  # noqa: F401 - the adapters, imported once for every child

    if use_uvloop:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            pass
    done: List[str] = []
    failed: Dict[str, str] = {}  # module → the error its import raised
    skipped: Dict[str, str] = {}  # the same for optional modules (names ending in ?)
    for name in names:
        optional = name.endswith("?")
        name = name.rstrip("?")
        try:
            importlib.import_module(name)
            done.append(name)
        except BaseException as exc:  # noqa: B902 - a module may even call sys.exit at import
            (skipped if optional else failed)[name] = "%s: %s" % (type(exc).__name__, exc)
    _warm_tokenize()
    for key, extra in WARM_UP.items():
        if key in sys.modules:
            for name in extra:
                try:
                    importlib.import_module(name)
                except BaseException:  # noqa: B902 - a warm-up only
                    pass
    warm_frameworks()
    return {"preloaded": done, "failed": failed, "optional_failed": skipped,
            "import_ms": round((time.perf_counter() - started) * 1000, 3)}


def _warm_tokenize() -> None:
    """``inspect.getsource`` (FastAPI reads each endpoint's source on its first request) compiles
    tokenize's big regular expressions once per process: ~6 ms, paid here instead of per instance."""
    try:
        import io
        import tokenize

        list(tokenize.generate_tokens(io.StringIO("def f(x):\n    return 'x' + 1\n").readline))
    except Exception:  # pragma: no cover - a warm-up only
        pass


class Zygote:
    """The zygote's state: the control socket, the supervisor's socket path (for standbys), the
    pre-forked standby child (``standby``: (pid, socket) or None)."""

    def __init__(self, ctrl: socket.socket, socket_path: str, use_uvloop: bool, standby: bool) -> None:
        self.ctrl = ctrl
        self.socket_path = socket_path
        self.use_uvloop = use_uvloop
        self.use_standby = standby
        self.prctl = libc_prctl()
        self.standby: Any = None  # (pid, socket, spare cgroup or "")
        self.standby_due: Any = None  # monotonic time to fork the next standby at
        self.next_cgroup = ""  # a spare memory cgroup (cgroup.procs) for the next standby
        self.discarded: List[str] = []  # spares that will not be used: told in the next reply
        self.wake: Any = None  # (read fd, write fd) of the signal wakeup pipe, once serving
        self.children: Set[int] = set()  # instances forked (not reaped yet)

    def standby_later(self, delay: float = STANDBY_DELAY) -> None:
        """Fork the next standby ``delay`` s from now: not while the instance just assigned is
        starting (on a small machine the fork would compete with it for the CPU)."""
        if self.use_standby and self.standby is None:
            self.standby_due = time.monotonic() + delay

    def make_standby(self) -> None:
        self.standby_due = None
        if not self.use_standby or self.standby is not None:
            return
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        me = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            _log("cannot pre-fork a standby child: %s" % exc)
            ours.close()
            theirs.close()
            return
        cgroup, self.next_cgroup = self.next_cgroup, ""
        if pid == 0:
            ours.close()
            standby_main(theirs, me, self.prctl, self.socket_path, self.use_uvloop, cgroup)
        theirs.close()
        self.standby = (pid, ours, cgroup)
        _send(self.ctrl, {"op": "standby", "pid": pid})

    def drop_standby(self) -> None:
        """The standby is stale (new modules were imported): it exits, a new one is forked."""
        if self.standby is not None:
            self.standby[1].close()  # EOF: it exits 0
            if self.standby[2]:
                self.discarded.append(self.standby[2])
            self.standby = None
        self.standby_later()

    def fork(self, request: Dict[str, Any], fds: List[int]) -> None:
        started = time.perf_counter()
        rid = request.get("id")
        if len(fds) != 2:
            for fd in fds:
                os.close(fd)
            _send(self.ctrl, {"op": "forked", "id": rid, "error": "expected 2 descriptors, got %d" % len(fds)})
            return
        options = request.get("options") or {}
        spare = options.pop("standby_cgroup", None)
        if spare:
            if self.next_cgroup:
                self.discarded.append(self.next_cgroup)
            self.next_cgroup = spare
        pid, cgroup = self._assign(request, fds)
        if pid is None:
            pid = self._fork_now(request, fds)
        for fd in fds:
            os.close(fd)
        discarded, self.discarded = self.discarded, []
        if pid is None:
            _send(self.ctrl, {"op": "forked", "id": rid, "error": "fork failed", "discarded": discarded})
            return
        self.children.add(pid)
        _send(self.ctrl, {"op": "forked", "id": rid, "pid": pid, "cgroup": cgroup, "discarded": discarded,
                          "fork_ms": round((time.perf_counter() - started) * 1000, 3)})
        if options.get("socket") and options["socket"] != self.socket_path:
            self.socket_path = options["socket"]
            if self.standby is not None:
                self.standby[1].close()
                if self.standby[2]:
                    self.discarded.append(self.standby[2])
                self.standby = None
        self.standby_later()

    def _assign(self, request: Dict[str, Any], fds: List[int]) -> Any:
        """Hand the request to the standby: ``(pid, its spare cgroup or "")``, or ``(None, "")``."""
        if self.standby is None:
            return None, ""
        pid, sock, cgroup = self.standby
        self.standby = None
        try:
            socket.send_fds(sock, [json.dumps({"spec": request.get("spec"), "options": request.get("options")}).encode()], fds)
        except OSError:
            if cgroup:
                self.discarded.append(cgroup)
            return None, ""
        finally:
            sock.close()
        return pid, cgroup

    def _fork_now(self, request: Dict[str, Any], fds: List[int]) -> Any:
        sys.stdout.flush()
        sys.stderr.flush()
        me = os.getpid()
        try:
            pid = os.fork()
        except OSError as exc:
            _log("fork failed: %s" % exc)
            return None
        if pid == 0:
            child_main(fds, request.get("spec") or {}, request.get("options") or {}, me, self.prctl)
        return pid

    def reap(self) -> None:
        """Reap every child that exited: an instance's process group is SIGKILLed first (while
        the instance is an unreaped zombie its pid, the group's id, cannot be reused)."""
        while True:
            try:
                info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                return
            if info is None:
                return
            pid = info.si_pid
            if pid in self.children:
                self.children.discard(pid)
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                pid, status = os.waitpid(pid, 0)
            except ChildProcessError:
                continue
            if self.standby is not None and self.standby[0] == pid:
                self.standby[1].close()
                if self.standby[2]:
                    self.discarded.append(self.standby[2])
                self.standby = None
                continue  # a standby nobody knows about: nothing to report
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            _send(self.ctrl, {"op": "exit", "pid": pid, "status": code})

    def kill_children(self) -> None:
        """SIGKILL the process group of every instance not reaped yet."""
        for pid in self.children:
            try:
                os.killpg(pid, signal.SIGKILL)
            except OSError:
                pass

    def preload(self, request: Dict[str, Any]) -> None:
        info = _preload([str(n) for n in request.get("names") or []], False)
        self.watch_signals()  # an event loop run at import may have taken or cleared the wakeup fd
        gc.collect()
        gc.freeze()
        info.update(op="preloaded", id=request.get("id"), threads=_settle_threads())
        _send(self.ctrl, info)
        if info["preloaded"]:
            self.drop_standby()

    def watch_signals(self) -> None:
        """Route SIGCHLD to the wakeup pipe and ignore SIGINT. Called again after every preload:
        a module that runs an event loop at import (``asyncio.run`` with signal handlers) sets
        the process's wakeup fd to its loop's and clears it when the loop closes, which would
        leave children's exits unreported."""
        if self.wake is None:
            self.wake = os.pipe()
            for fd in self.wake:
                os.set_blocking(fd, False)
        signal.set_wakeup_fd(self.wake[1])
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the byte on the pipe is what matters
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    def serve(self) -> int:
        """The loop: fork on request, report exits, stop on EOF. Single-threaded."""
        ctrl = self.ctrl
        self.watch_signals()
        assert self.wake is not None
        wake_r = self.wake[0]
        self.make_standby()
        while True:
            timeout = None
            if self.standby_due is not None:
                timeout = self.standby_due - time.monotonic()
                if timeout <= 0:
                    self.make_standby()
                    timeout = None
            watched: List[Union[socket.socket, int]] = [ctrl, wake_r]
            readable, _, _ = select.select(watched, [], [], timeout)
            if wake_r in readable:
                try:
                    while os.read(wake_r, 512):
                        pass
                except BlockingIOError:
                    pass
                self.reap()
            if ctrl not in readable:
                continue
            try:
                data, fds, _flags, _addr = socket.recv_fds(ctrl, MAX_MESSAGE, 8)
            except ConnectionError:
                data, fds = b"", []
            if not data:  # the supervisor died: take its instances with it
                if self.standby is not None:
                    self.standby[1].close()
                self.kill_children()
                return 0
            try:
                request = json.loads(data)
            except ValueError:
                request = {}
            op = request.get("op")
            if op == "fork":
                self.fork(request, list(fds))
                continue
            for fd in fds:
                os.close(fd)
            if op == "exit":  # a planned stop: the instances live on (the supervisor reaps them)
                if self.standby is not None:
                    self.standby[1].close()
                return 0
            if op == "preload":
                self.preload(request)
            else:
                _log("ignored a malformed control message")


def main(argv: List[str]) -> int:
    """Zygote entry point: ``argv = [config JSON]`` (module docstring). Returns the exit code."""
    try:
        config = json.loads(argv[0])
        ctrl = socket.socket(fileno=int(config["control_fd"]))
    except (IndexError, ValueError, KeyError, OSError) as exc:
        _log("usage: zygote <config JSON> (%s)" % exc)
        return worker.EXIT_USAGE
    keep_installed_bytecode_in_place()
    if config.get("dumpable") is False:  # fnserve start (issue 10 item 8); its children inherit it
        set_dumpable(False)
    use_uvloop = bool(config.get("uvloop", True))
    info = _preload([str(n) for n in config.get("preload") or []], use_uvloop)
    gc.collect()
    gc.freeze()  # children share these pages; keep the collector from touching (copying) them
    info.update(op="ready", pid=os.getpid(), threads=_settle_threads(), python=sys.version.split()[0])
    zygote = Zygote(ctrl, str(config.get("socket") or ""), use_uvloop, bool(config.get("standby", True)))
    try:
        _send(ctrl, info)
        return zygote.serve()
    except (BrokenPipeError, ConnectionError):  # the supervisor is gone
        zygote.kill_children()
        return 0
    finally:
        ctrl.close()
