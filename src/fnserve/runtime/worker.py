"""The worker process main: load one function, then serve ASGI streams from the front server.

Runs inside the function's own environment and Python (3.9–3.13), stdlib only, with this package
loaded under a private name by the supervisor's bootstrap (nothing of fnserve on ``sys.path``).

Invocation (by ``fnserve.supervisor.launch``)::

    python -I -u -c BOOTSTRAP <runtime dir> <spec JSON> <options JSON>

``spec``: the function spec of docs/ARCHITECTURE.md ("runtime"). ``options``: ``{"socket": path of
the supervisor's Unix socket, "token": str identifying this instance, "heartbeat": seconds between
heartbeats, "stop_timeout": default seconds to drain on SIGTERM, "uvloop": bool}``, optionally
``"cgroup"``: the ``cgroup.procs`` file to join and ``"rlimit_as"``: bytes for ``RLIMIT_AS`` (memory
limits, applied before the function is imported; see ``fnserve.supervisor.limits``), ``"rlimits"``
and ``"supervisor"`` (the front's pid: see ``runtime.containment``), ``"direct"``: the path of the
front's ``direct.sock`` (the direct path, ``runtime.direct``; absent: frames only).

Life of a worker:
1. chdir to ``spec["project_root"]``; connect to ``socket``; send ``HELLO {token, pid, python}``.
2. ``load_function(spec)`` with the event loop stopped and unset, so the module's top level runs
   as under ``python module.py`` (SPEC §4: ``asyncio.run(...)``, threads, blocking I/O at import),
   then lifespan startup in the loop. On failure send ``LOAD_ERROR`` (``LoadError.to_dict()``
   shape) and exit with ``EXIT_LOAD_ERROR`` (4, gunicorn's APP_LOAD_ERROR) — the supervisor does
   not respawn it until the function changes.
3. Send ``READY {pid, startup_ms, kind}``; serve every ``SCOPE`` as its own task running
   ``app(scope, receive, send)``; ``HEARTBEAT {inflight}`` every ``heartbeat`` seconds. The first
   heartbeat carries ``imported``: the non-project modules the function's load imported (lazy
   framework imports such as FastAPI's ``pydantic.v1``); the first one after the first request
   carries those the request added (an instance stopped before that says it when it stops). A
   zygote learns them (faster cold starts). Not in READY:
   listing ``sys.modules`` touches every key, which in a forked child means copy-on-write faults
   on the critical path.
   With ``options["direct"]``: a SOCK_SEQPACKET channel to the front (connected in ``connect``,
   announced with ``b"T" + token``) brings client connections the worker serves itself
   (``runtime.direct.DirectServer``, once a ``DIRECT_PLAN`` came); ``REPORT`` / ``EXPIRED`` go
   over this connection; ``inflight`` counts those requests too.
4. On ``STOP {timeout}``, SIGTERM or SIGINT (handlers only set an event): refuse new streams (direct:
   adopt no more connections, hand idle ones back at once and busy ones after their response), wait up
   to ``timeout`` s for in-flight ones, lifespan shutdown, exit 0. If the front's connection is lost,
   in-flight tasks are cancelled at once (nobody can receive their answer) and the worker exits 0.

stdout/stderr are left alone: the supervisor reads them line by line into the function's log.
"""

import asyncio
import gc
import json
import os
import signal
import socket
import sys
import time
import traceback
import warnings
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Set

from . import protocol as p
from .bytecode import keep_installed_bytecode_in_place
from .confine import confine, hint
from .containment import contain, log_line

if TYPE_CHECKING:  # pragma: no cover - imported when the direct path is on (runtime.direct)
    from .direct import DirectServer

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_LOAD_ERROR = 4


def _load(spec: Dict[str, Any]) -> Any:
    """``runtime.loader.load_function(spec)``; a minimal ASGI-only stand-in if the loader is absent."""
    try:
        from .loader import load_function
    except ImportError as exc:
        if not (exc.name or "").endswith("loader"):
            raise
        return _StandInLoaded(spec)
    return load_function(spec)


class _StandInLoaded:
    """Used only while ``runtime/loader.py`` does not exist: imports ``module`` from ``import_roots``
    and serves ``attr`` as an ASGI 3 app, without lifespan."""

    kind = "asgi"

    def __init__(self, spec: Dict[str, Any]) -> None:
        import importlib

        for root in reversed(spec.get("import_roots") or []):
            if root not in sys.path:
                sys.path.insert(0, root)
        module = importlib.import_module(spec["module"])
        self.app = getattr(module, spec.get("attr") or "app")

    async def startup(self) -> None:
        return None

    async def shutdown(self, timeout: float = 30.0) -> None:
        return None


def _load_error_dict(spec: Dict[str, Any], exc: BaseException) -> Dict[str, Any]:
    to_dict = getattr(exc, "to_dict", None)
    if callable(to_dict):
        try:
            return dict(to_dict())
        except Exception:  # pragma: no cover - a broken to_dict must not hide the error
            pass
    return {
        "message": "%s: %s: %s" % (spec.get("id", spec.get("path")), type(exc).__name__, exc),
        "file": spec.get("id") or spec.get("path"),
        "attr": spec.get("attr"),
        "found": type(exc).__name__,
        "traceback": "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        "hint": "fix the error above; the function is retried when its file changes",
    }


class Worker:
    """One function instance serving streams from one ``protocol.Connection``."""

    def __init__(self, spec: Dict[str, Any], options: Dict[str, Any], sock: Any = None, joining: Any = None) -> None:
        self.spec = spec
        self.joining = joining  # the cgroup-join thread (apply_limits), finished before READY
        self.sock = sock  # already connected to the supervisor (a zygote standby), or None
        self.socket_path = options["socket"]
        self.token = options.get("token", "")
        self.heartbeat = float(options.get("heartbeat", 1.0))
        self.stop_timeout = float(options.get("stop_timeout", 10.0))
        self.conn: Optional[p.Connection] = None
        self.app: Any = None
        self.tasks: Set[asyncio.Task[None]] = set()
        self.stopping = False
        self.lost = False
        self.served = 0
        self._reports = 0  # heartbeats that carried "imported" (at most 2)
        self._mark = 0  # len(sys.modules) when last listed
        self._stop: Optional[asyncio.Event] = None
        self._started = 0.0  # perf_counter() when loading began
        self.front_death: Any = None  # containment.FrontDeath: die with the front (checked per heartbeat)
        self.confined = False  # writes restricted (runtime.confine): refused writes get a hint in the log
        self.direct_path: Optional[str] = options.get("direct") or None
        self.direct_channel: Optional[socket.socket] = None  # SOCK_SEQPACKET to the front (direct path)
        self.direct: Optional["DirectServer"] = None
        self._plan: Optional[Dict[str, Any]] = None  # a DIRECT_PLAN received before the server exists

    async def connect(self) -> int:
        """Connect to the supervisor, send ``HELLO`` and install the stop signals. Returns 0, or
        ``EXIT_CONNECT`` when the supervisor cannot be reached."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            factory = lambda: p.Connection(self._on_control, self._on_open, self._on_lost)  # noqa: E731
            if self.sock is not None:
                _, conn = await loop.create_unix_connection(factory, sock=self.sock)
            else:
                _, conn = await loop.create_unix_connection(factory, self.socket_path)
        except OSError as exc:
            log_line("cannot connect to the supervisor at %s: %s" % (self.socket_path, exc))
            return EXIT_CONNECT
        self.conn = conn
        conn.send_control(p.HELLO, {"token": self.token, "pid": os.getpid(), "python": sys.version.split()[0]})
        conn.flush()
        if self.direct_path:
            # imported now, before confinement: with --user the interpreter's own modules (mmap...)
            # may not be readable after the uid changed (a zygote has imported it already)
            from . import direct  # noqa: F401
            self.direct_channel = _connect_direct(self.direct_path, self.token)
        self._signals(loop)
        return EXIT_OK

    def _signals(self, loop: asyncio.AbstractEventLoop) -> None:
        for signum in (signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(signum, self._request_stop, None)
            except (NotImplementedError, RuntimeError, ValueError):  # pragma: no cover - non-Unix
                pass

    def load(self) -> Any:
        """Import the function (``loader.load_function``) — called with NO event loop running
        and none set as current, exactly as ``python module.py`` would run its top level (SPEC
        §4: a module may call ``asyncio.run(...)``, start threads or block at import). Returns
        the ``LoadedFunction``, or the exception that loading raised."""
        self._started = time.perf_counter()
        self._mark = len(sys.modules)
        try:
            return _load(self.spec)
        except Exception as exc:
            return exc

    async def serve(self, loaded: Any) -> int:
        """After ``load``: lifespan startup, ``READY``, then serve streams until stopped.
        Returns the exit code (``EXIT_LOAD_ERROR`` when loading or startup failed)."""
        loop = asyncio.get_running_loop()
        conn = self.conn
        assert conn is not None and self._stop is not None
        self._signals(loop)  # again: a loop the module ran at import may have reset the wakeup fd
        started = self._started
        try:
            if isinstance(loaded, BaseException):
                raise loaded
            await loaded.startup()
        except Exception as exc:
            conn.send_control(p.LOAD_ERROR, _load_error_dict(self.spec, exc))
            conn.close()
            await self._wait_lost(2.0)
            return EXIT_LOAD_ERROR
        self.app = loaded.app
        if self.joining is not None:
            self.joining.join(10.0)
        if self.direct_channel is not None:
            from .direct import DirectServer

            self.direct = DirectServer(self.app, self.direct_channel, conn.send_control, self._log_app_error)
            self.direct.served_elsewhere = lambda: self.served  # max_requests counts frames requests too
            self.direct.urgent = conn.flush
            if self._plan is not None:
                self._install_plan(self._plan)
        gc.freeze()  # the imported code is long-lived: keep it out of every later collection
        conn.send_control(
            p.READY,
            {"pid": os.getpid(), "startup_ms": round((time.perf_counter() - started) * 1000, 3), "kind": loaded.kind},
        )
        beat = loop.create_task(self._heartbeat())
        try:
            await self._stop.wait()
        finally:
            beat.cancel()
        return await self._drain(loaded)

    async def _drain(self, loaded: Any) -> int:
        self.stopping = True
        direct = self.direct
        if direct is not None:
            direct.stop()
        if self._reports < 2 and self.conn is not None and not self.lost:  # stopped before its heartbeats
            self._reports = 2
            self.conn.send_control(p.HEARTBEAT, {"inflight": self._inflight(), "imported": self._new_modules()})
        deadline = time.monotonic() + self.stop_timeout
        if self.tasks and not self.lost:
            await asyncio.wait(set(self.tasks), timeout=self.stop_timeout)
        if direct is not None:
            if not self.lost:
                await direct.wait_idle(max(0.0, deadline - time.monotonic()))
            direct.close()
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.wait(set(self.tasks), timeout=1.0)
        try:
            await asyncio.wait_for(loaded.shutdown(max(0.5, deadline - time.monotonic())), timeout=max(1.0, deadline - time.monotonic() + 1.0))
        except Exception as exc:
            log_line("lifespan shutdown failed: %s: %s" % (type(exc).__name__, exc))
        if self.conn is not None:
            self.conn.close()
            await self._wait_lost(1.0)
        return EXIT_OK

    async def _wait_lost(self, timeout: float) -> None:
        if self.conn is not None and not self.conn.lost.done():
            try:
                await asyncio.wait_for(asyncio.shield(self.conn.lost), timeout)
            except asyncio.TimeoutError:
                pass

    def _new_modules(self) -> List[str]:
        """Modules imported since the last call (``sys.modules`` keeps insertion order) that are
        not the project's (module docstring): a file under the project root or an import root is
        the project's unless it is in the env's installation paths (the stdlib's folder and
        ``site.getsitepackages()``; ``fnserve dev`` keeps the env under ``<project>/.fnserve/envs/``).
        Imports nothing itself (a module imported here would be reported)."""
        import site  # imported at start-up (workers run without -S)

        roots = tuple(os.path.join(os.path.abspath(r), "") for r in
                      list(self.spec.get("import_roots") or []) + [self.spec.get("project_root") or ""] if r)
        folders = [os.path.dirname(os.__file__)] + list(getattr(site, "getsitepackages", lambda: [])())
        installed = tuple({os.path.join(os.path.abspath(f), "") for f in folders})
        private = __name__.split(".")[0]
        names = list(sys.modules)[self._mark:]
        self._mark = len(sys.modules)
        out = []
        for name in names:
            module = sys.modules.get(name)
            if module is None or name == "__main__" or name.split(".")[0] == private:
                continue
            path = getattr(module, "__file__", None)
            if path and (not os.path.abspath(path).startswith(roots) or os.path.abspath(path).startswith(installed)):
                out.append(name)
        return sorted(out)

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat)
            assert self.conn is not None
            if self.front_death is not None and not self.front_death.check():
                self._request_stop(0.0)  # reparented, and not to the front: it is gone
            meta: Dict[str, Any] = {"inflight": self._inflight()}
            if self._reports == 0 or (self._reports == 1 and (self.served or (self.direct is not None and self.direct.served))):
                self._reports += 1
                meta["imported"] = self._new_modules()
            self.conn.send_control(p.HEARTBEAT, meta)

    def _inflight(self) -> int:
        return len(self.tasks) + (self.direct.inflight if self.direct is not None else 0)

    def _install_plan(self, plan: Any) -> None:
        if self.direct is None:
            self._plan = plan  # installed when the direct server starts (after the load)
            return
        try:
            self.direct.set_plan(plan)
        except (KeyError, ValueError, TypeError, AttributeError) as exc:
            log_line("ignored a malformed direct plan (%s: %s); connections are handed back until a valid one comes"
                     % (type(exc).__name__, exc))

    def _log_app_error(self, exc: BaseException) -> None:
        """What the app raised on a direct connection: logged as on the frames path."""
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        tb += "hint: %s\n" % hint(exc) if self.confined and hint(exc) else ""
        sys.stderr.write(tb)
        sys.stderr.flush()
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            self._request_stop(None)

    # -- callbacks from the connection (run in the event loop; they only enqueue work)
    def _request_stop(self, timeout: Optional[float]) -> None:
        if timeout is not None:
            self.stop_timeout = float(timeout)
        if self._stop is not None:
            self._stop.set()

    def _on_control(self, ftype: int, obj: Any) -> None:
        if ftype == p.STOP:
            self._request_stop(obj.get("timeout") if isinstance(obj, dict) else None)
        elif ftype == p.DIRECT_PLAN:
            self._install_plan(obj)

    def _on_lost(self, exc: Optional[BaseException]) -> None:
        self.lost = True
        self.stop_timeout = 0.0
        for task in list(self.tasks):
            task.cancel()
        self._request_stop(None)

    def _on_open(self, stream: p.Stream, scope: Dict[str, Any]) -> None:
        if self.stopping or self.app is None:
            stream.send(p.ERROR, 0, p.dumps({"message": "the worker is stopping", "traceback": "", "response_started": False, "retry": True}))
            stream.close()
            return
        # the task leaves self.tasks at the end of _serve (no done callback: one loop callback less)
        self.tasks.add(stream.conn.loop.create_task(self._serve(stream, scope)))

    async def _serve(self, stream: p.Stream, scope: Dict[str, Any]) -> None:
        conn = stream.conn
        is_http = scope.get("type") == "http"
        gone: List[Dict[str, Any]] = []  # the disconnect message once the client is gone
        started = [False]
        complete = [False]  # the HTTP response's last body chunk was sent
        status = [0]  # the response's status (500: the app raised), for the direct path's max_failures

        async def receive() -> Dict[str, Any]:
            if gone:
                return gone[0]
            try:
                ftype, flags, meta, data = await stream.get()
            except p.ConnectionLost:
                ftype, flags, meta, data = p.DISCONNECT, 0, b"", b""
            if ftype == p.HTTP_REQUEST:
                return {"type": "http.request", "body": data, "more_body": bool(flags & p.MORE)}
            if ftype == p.MESSAGE:
                message = p.decode_message(flags, meta, data)
                if message.get("type") == "websocket.disconnect":
                    gone.append(message)
                return message
            gone.append({"type": "http.disconnect"} if is_http else {"type": "websocket.disconnect", "code": 1006})
            return gone[0]

        async def send(message: Dict[str, Any]) -> None:
            if gone or stream.reset or conn.closed:
                return  # ASGI: sends after a disconnect are dropped
            mtype = message["type"]
            if mtype == "http.response.body":
                body = message.get("body", b"")
                if type(body) is not bytes:
                    body = bytes(body)
                more = message.get("more_body", False)
                if not stream.send_now(p.RESPONSE_BODY, body, more):
                    if not await stream.send_data(p.RESPONSE_BODY, body, more):
                        return  # the client is gone (flow control woke us with a reset)
                if not more:
                    complete[0] = True
                    # as uvicorn: once the response is complete, receive() says http.disconnect
                    stream.fail(p.ConnectionLost("the response is complete"))
            elif mtype == "http.response.start":
                started[0] = True
                status[0] = message.get("status") or 0
                headers = message.get("headers", ())
                if type(headers) is not list and type(headers) is not tuple:
                    # any iterable of pairs (Sanic sends a generator): read it once (SPEC §4)
                    headers = list(headers)
                    message = dict(message)
                    message["headers"] = headers
                block = p.pack_headers(headers) if len(message) <= 3 else None
                if block is not None:  # the usual shape: status + headers, no trailers
                    stream.send(p.RESPONSE_START, p.RAW_HEADERS, b"%d" % message["status"], block)
                else:
                    stream.send(p.RESPONSE_START, 0, p.encode_message(message)[1])
            else:
                if mtype == "websocket.accept" or mtype == "websocket.http.response.start":
                    started[0] = True
                flags, meta, data = p.encode_message(message)
                if data:
                    if stream.send_window <= 0 and not await stream.wait_window():
                        return
                    stream.send_window -= len(data)
                stream.send(p.MESSAGE, flags, meta, data)
            if conn._write_paused or conn._out_size > p.FLUSH_NOW:
                try:
                    await conn.drain()
                except p.ConnectionLost:
                    return

        try:
            await self.app(scope, receive, send)
        except asyncio.CancelledError:
            stream.close()
            self.tasks.discard(asyncio.current_task())
            raise
        except BaseException as exc:  # noqa: B902 - report everything the app raises, then go on
            tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            tb += "hint: %s\n" % hint(exc) if self.confined and hint(exc) else ""
            sys.stderr.write(tb)
            sys.stderr.flush()
            stream.send(p.ERROR, 0, p.dumps({"message": "%s: %s" % (type(exc).__name__, exc), "traceback": tb, "response_started": started[0]}))
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                self._request_stop(None)
            status[0] = 500
        else:
            if not complete[0]:
                stream.send(p.END)
        self.served += 1
        if is_http and self.direct is not None:  # failures in a row count over both paths (max_failures)
            self.direct.failures = self.direct.failures + 1 if status[0] >= 500 else 0
        stream.close()
        self.tasks.discard(asyncio.current_task())
        # no flush here: the frames leave at the end of this loop step, in one write with the
        # responses of the other streams that finished in it (bench/ipc.py: ~3 µs CPU less)


def _connect_direct(path: str, token: str) -> Optional[socket.socket]:
    """The direct path's channel to the front (``options["direct"]``): a SOCK_SEQPACKET socket
    connected to ``path`` that said ``b"T" + token``, non-blocking; None (one log line) when the
    front cannot be reached: the worker then serves over frames only."""
    sock = None
    try:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(path)
        sock.send(b"T" + token.encode("ascii"))
        sock.setblocking(False)
    except (OSError, UnicodeEncodeError) as exc:
        log_line("cannot connect to the direct path socket %s: %s (serving over frames only)" % (path, exc))
        if sock is not None:
            sock.close()
        return None
    return sock


def new_loop(use_uvloop: bool) -> asyncio.AbstractEventLoop:
    """A new event loop: uvloop's when ``use_uvloop`` and it is installed, else asyncio's."""
    if use_uvloop:
        try:
            import uvloop

            return uvloop.new_event_loop()
        except ImportError:
            pass
    return asyncio.new_event_loop()


def apply_limits(options: Dict[str, Any]) -> Optional[Any]:
    """Set ``RLIMIT_AS`` to ``options["rlimit_as"]`` bytes and join the memory cgroup
    ``options["cgroup"]`` (its ``cgroup.procs``), when given. The join can take ~10 ms in the
    kernel (an RCU grace period), so it runs in a thread while the worker connects and imports;
    the returned thread (or None) is joined before READY, so no request runs outside the limit.
    A failure is logged, never fatal: the supervisor also polls the instance's RSS."""
    limit = options.get("rlimit_as")
    if limit:
        try:
            import resource

            resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))
        except (ImportError, ValueError, OSError) as exc:
            log_line("cannot set RLIMIT_AS to %s bytes: %s" % (limit, exc))
    procs = options.get("cgroup")
    if not procs:
        return None

    def join() -> None:
        try:
            with open(procs, "w") as f:
                f.write(str(os.getpid()))
        except OSError as exc:
            log_line("cannot join memory cgroup %s: %s (the supervisor's RSS polling still applies)" % (procs, exc))

    import threading

    thread = threading.Thread(target=join, name="fnserve-cgroup-join", daemon=True)
    thread.start()
    return thread


def _fresh_loop_state() -> None:
    """No current event loop, and asyncio's state as in a new interpreter: a fresh default policy,
    so a module-level ``asyncio.get_event_loop()`` makes a loop as it would there (after a
    ``set_event_loop`` call the old policy would raise instead on Python < 3.12)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the policy API is deprecated in 3.14
        asyncio.set_event_loop(None)
        asyncio.set_event_loop_policy(None)


def main(argv: List[str], loop: Optional[asyncio.AbstractEventLoop] = None, sock: Any = None) -> int:
    """Worker entry point: ``argv = [spec JSON, options JSON]``. Returns the exit code
    (0 stopped, 2 bad arguments, 3 could not connect, 4 the function failed to load). A zygote
    standby passes its pre-created ``loop`` and ``sock`` (connected to ``options["socket"]``)."""
    try:
        spec = json.loads(argv[0])
        options = json.loads(argv[1])
    except (IndexError, ValueError) as exc:
        log_line("usage: worker <spec JSON> <options JSON> (%s)" % exc)
        return EXIT_USAGE
    keep_installed_bytecode_in_place()
    joining = apply_limits(options)
    root = spec.get("project_root")
    if root:
        os.chdir(root)
    sys.argv = [spec.get("path") or "fnserve-worker"]
    if loop is None:
        loop = new_loop(bool(options.get("uvloop", True)))
    worker = Worker(spec, options, sock, joining)
    asyncio.set_event_loop(loop)
    try:
        code = loop.run_until_complete(worker.connect())
        if code != EXIT_OK:
            return code
        worker.confined = confine(options.get("confine"), joining)  # fnserve start: TMPDIR, user, read-only code
        # the import runs as under plain Python: no running loop, none set (SPEC §4); the
        # connection's transport waits, unread, in the stopped loop meanwhile
        _fresh_loop_state()
        worker.front_death = contain(options)  # rlimits, death signal (issue 10 item 7); after any uid change
        loaded = worker.load()
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(worker.serve(loaded))
    finally:
        try:
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
