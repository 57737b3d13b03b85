"""The zygote: a pre-warmed process that forks function instances (SPEC §9 cold starts).

Runs in the function's own environment and Python (3.9–3.13), stdlib only, loaded under the
private package name like the worker. Started by ``fnserve.supervisor.zygote.ZygoteLauncher``::

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
  signal). The zygote is the children's parent, so it reaps them and reports their status.
- EOF on the control socket: the zygote exits (its children get SIGKILL through
  ``PR_SET_PDEATHSIG``; the supervisor stops them gracefully before that).

Fork safety: the zygote runs no thread (checked after the imports, reported in ``threads``), its
imported objects are moved out of the garbage collector's reach with ``gc.freeze()`` (so children
do not dirty the shared pages by collecting them). In the child: a new session (own process group),
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
import traceback
from typing import Any, Dict, List

from . import worker

MAX_MESSAGE = 1 << 20
STANDBY_DELAY = 0.05  # s after an assignment before the next standby is forked

# Modules frameworks import lazily on their first request (measured: FastAPI's first request costs
# ~19 ms importing anyio's asyncio backend). Imported in the zygote when the key module is loaded.
WARM_UP = {
    "anyio": ("anyio._backends._asyncio", "anyio.streams.memory", "anyio.streams.stapled", "anyio.streams.tls", "queue"),
    "werkzeug": ("encodings.idna",),
}
EXIT_CHILD_ERROR = 70


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


def _preload(names: List[str], use_uvloop: bool) -> Dict[str, Any]:
    started = time.perf_counter()
    from . import loader  # noqa: F401 - the adapters, imported once for every child

    if use_uvloop:
        try:
            import uvloop  # type: ignore[import-not-found]  # noqa: F401
        except ImportError:
            pass
    done, failed, skipped = [], {}, {}
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


def _prctl_deathsig() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl
    except (ImportError, OSError, AttributeError):
        return None


def _clean_child(zygote_pid: int, prctl: Any) -> None:
    """In a freshly forked child: signals, session, death signal, random state, root logging."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    os.setsid()
    if prctl is not None:
        prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the zygote
        if os.getppid() != zygote_pid:
            os._exit(EXIT_CHILD_ERROR)
    if "random" in sys.modules:
        sys.modules["random"].seed()
    if "logging" in sys.modules:
        root = sys.modules["logging"].getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)


def _close_fds(keep: int = -1) -> None:
    """Close every descriptor above 2 but ``keep`` (the control socket, the wakeup pipe, ...)."""
    top = _max_fd()
    if 2 < keep < top:
        os.closerange(3, keep)
        os.closerange(keep + 1, top)
    else:
        os.closerange(3, top)


def _run_worker(fds: List[int], spec: Dict[str, Any], options: Dict[str, Any], loop: Any = None, sock: Any = None) -> int:
    os.dup2(fds[0], 1)
    os.dup2(fds[1], 2)
    for fd in fds:
        if fd > 2:
            os.close(fd)
    return worker.main([json.dumps(spec), json.dumps(options)], loop=loop, sock=sock)


def _exit_child(code: int) -> None:
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _child(fds: List[int], spec: Dict[str, Any], options: Dict[str, Any], zygote_pid: int, prctl: Any) -> None:
    """A child forked on request: clean it, then run the worker main. Never returns."""
    code = EXIT_CHILD_ERROR
    try:
        _clean_child(zygote_pid, prctl)
        os.dup2(fds[0], 1)
        os.dup2(fds[1], 2)
        _close_fds()  # the control socket, the wakeup pipe, the passed pipe ends, a standby's socket
        code = worker.main([json.dumps(spec), json.dumps(options)])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_CHILD_ERROR
    except BaseException:  # noqa: B902 - report anything, then leave without running the zygote's code
        traceback.print_exc()
    finally:
        _exit_child(code)


def _standby(assign: socket.socket, zygote_pid: int, prctl: Any, socket_path: str, use_uvloop: bool,
             cgroup: str = "") -> None:
    """A pre-forked child (Android's "USAP"): cleaned, with its event loop created and (when the
    supervisor's socket is known) already connected, waiting for its assignment
    ``{"spec", "options"}`` + stdout/stderr fds. Never returns."""
    code = EXIT_CHILD_ERROR
    try:
        _clean_child(zygote_pid, prctl)
        _close_fds(assign.fileno())
        joined = False
        if cgroup:  # a spare memory cgroup: joined now, its limit is written at assignment
            try:
                with open(cgroup, "w") as f:
                    f.write(str(os.getpid()))
                joined = True
            except OSError:
                pass
        loop = worker.new_loop(use_uvloop)
        _warm_child(loop)
        sock = None
        if socket_path:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(socket_path)
            except OSError:
                sock = None
        data, fds, _flags, _addr = socket.recv_fds(assign, MAX_MESSAGE, 8)
        if not data or len(fds) != 2:
            _exit_child(0)  # retired by the zygote
        assign.close()
        request = json.loads(data)
        options = request.get("options") or {}
        if joined:
            options["cgroup"] = None  # already in the cgroup the supervisor adopts for this instance
        if sock is not None and options.get("socket") != socket_path:
            sock.close()
            sock = None
        code = _run_worker(list(fds), request.get("spec") or {}, options, loop=loop, sock=sock)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else EXIT_CHILD_ERROR
    except BaseException:  # noqa: B902
        traceback.print_exc()
    finally:
        _exit_child(code)


def _warm_child(loop: Any) -> None:
    """In a standby, before its assignment: run the worker's generic first steps once (an event
    loop turn, the protocol objects, JSON), so the copy-on-write faults they cause are taken
    now rather than during a cold start."""
    try:
        import asyncio

        async def turn() -> None:
            asyncio.Event()
            await asyncio.sleep(0)

        loop.run_until_complete(turn())
        worker.p.Connection()
        json.loads(json.dumps({"warm": [1, 2.0, None, "x"]}))
    except Exception:  # pragma: no cover - a warm-up only
        pass


def _max_fd() -> int:
    try:
        return max(int(n) for n in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024


class Zygote:
    """The zygote's state: the control socket, the supervisor's socket path (for standbys), the
    pre-forked standby child (``standby``: (pid, socket) or None)."""

    def __init__(self, ctrl: socket.socket, socket_path: str, use_uvloop: bool, standby: bool) -> None:
        self.ctrl = ctrl
        self.socket_path = socket_path
        self.use_uvloop = use_uvloop
        self.use_standby = standby
        self.prctl = _prctl_deathsig()
        self.standby: Any = None  # (pid, socket, spare cgroup or "")
        self.standby_due: Any = None  # monotonic time to fork the next standby at
        self.next_cgroup = ""  # a spare memory cgroup (cgroup.procs) for the next standby
        self.discarded: List[str] = []  # spares that will not be used: told in the next reply

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
            _standby(theirs, me, self.prctl, self.socket_path, self.use_uvloop, cgroup)
        theirs.close()
        self.standby = (pid, ours, cgroup)

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
            _child(fds, request.get("spec") or {}, request.get("options") or {}, me, self.prctl)
        return pid

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.standby is not None and self.standby[0] == pid:
                self.standby[1].close()
                if self.standby[2]:
                    self.discarded.append(self.standby[2])
                self.standby = None
                continue  # a standby nobody knows about: nothing to report
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            _send(self.ctrl, {"op": "exit", "pid": pid, "status": code})

    def preload(self, request: Dict[str, Any]) -> None:
        info = _preload([str(n) for n in request.get("names") or []], False)
        gc.collect()
        gc.freeze()
        info.update(op="preloaded", id=request.get("id"), threads=_thread_count())
        _send(self.ctrl, info)
        if info["preloaded"]:
            self.drop_standby()

    def serve(self) -> int:
        """The loop: fork on request, report exits, stop on EOF. Single-threaded."""
        ctrl = self.ctrl
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # the byte on wake_w is what matters
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        self.make_standby()
        while True:
            timeout = None
            if self.standby_due is not None:
                timeout = self.standby_due - time.monotonic()
                if timeout <= 0:
                    self.make_standby()
                    timeout = None
            readable, _, _ = select.select([ctrl, wake_r], [], [], timeout)
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
            if not data:
                if self.standby is not None:
                    self.standby[1].close()
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
    use_uvloop = bool(config.get("uvloop", True))
    info = _preload([str(n) for n in config.get("preload") or []], use_uvloop)
    gc.collect()
    gc.freeze()  # children share these pages; keep the collector from touching (copying) them
    info.update(op="ready", pid=os.getpid(), threads=_thread_count(), python=sys.version.split()[0])
    zygote = Zygote(ctrl, str(config.get("socket") or ""), use_uvloop, bool(config.get("standby", True)))
    try:
        _send(ctrl, info)
        return zygote.serve()
    except (BrokenPipeError, ConnectionError):
        return 0
    finally:
        ctrl.close()
