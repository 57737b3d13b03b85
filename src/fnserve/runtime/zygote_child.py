"""What a child of the zygote runs (stdlib only, Python 3.9–3.13): cleaning a freshly forked
process, the on-request child (``child_main``) and the pre-forked standby (``standby_main``).
See ``zygote`` for the protocol and the fork-safety list. Neither function returns."""

import json
import os
import signal
import socket
import sys
import traceback
from typing import Any, Dict, List

from . import direct, protocol, worker  # noqa: F401 - direct: the direct path's server, loaded once for every fork
from .asgitypes import Message
from .containment import PR_SET_PDEATHSIG

MAX_MESSAGE = 1 << 20
EXIT_CHILD_ERROR = 70
WARM_TIMEOUT = 2.0  # s: a framework warm-up that does not finish by then is abandoned


def _clean_child(zygote_pid: int, prctl: Any, standby: bool = False) -> None:
    """In a freshly forked child: signals, session (its own process group: pgid = pid, what the
    supervisor kills on every exit), death signal for a standby, random state, root logging.

    An instance does NOT die with its zygote (issue 10 item 6: a function may kill it): if the
    zygote dies it is reparented to the front (a child subreaper), which reaps it. A standby, not
    yet anybody's instance, dies with its zygote (``PR_SET_PDEATHSIG``, cleared at assignment)."""
    signal.set_wakeup_fd(-1)
    for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)
    os.setsid()
    if standby and prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != zygote_pid:  # the zygote died while we were forked: nobody knows us
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


def child_main(fds: List[int], spec: Dict[str, Any], options: Dict[str, Any], zygote_pid: int, prctl: Any) -> None:
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


def standby_main(assign: socket.socket, zygote_pid: int, prctl: Any, socket_path: str, use_uvloop: bool,
             cgroup: str = "") -> None:
    """A pre-forked child (Android's "USAP"): cleaned, with its event loop created and (when the
    supervisor's socket is known) already connected, waiting for its assignment
    ``{"spec", "options"}`` + stdout/stderr fds. Never returns."""
    code = EXIT_CHILD_ERROR
    try:
        _clean_child(zygote_pid, prctl, standby=True)
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
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, 0)  # an instance now: it outlives its zygote
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
            protocol.Connection()  # needs the running loop

        loop.run_until_complete(turn())
        json.loads(json.dumps({"warm": [1, 2.0, None, "x"]}))
    except Exception:  # pragma: no cover - a warm-up only
        pass
    warm_frameworks(loop)
    import gc

    gc.collect()  # the throwaway app's cycles: their memory (already private here) is reused by the import


def warm_frameworks(loop: Any = None) -> None:
    """Build a throwaway app of each preloaded framework (FastAPI: typed routes and a body model;
    Flask: two routes) and serve it one request through the runtime's own code (ASGI adapter and
    lifespan; WSGI environ). In the zygote: fills the framework's caches (pydantic schema
    generation, FastAPI's route analysis, starlette's middleware stack) shared by every child.
    In a standby: takes, before the assignment, the copy-on-write and fresh-memory page faults
    that the same code paths would take while the user module is imported (measured: the
    import of the showcase's FastAPI app 5-7 ms → ~3 ms). No thread is started (``async``
    endpoints only; the WSGI app is called directly). Never the user's code, never fatal."""
    fastapi = sys.modules.get("fastapi")
    if fastapi is not None and hasattr(fastapi, "FastAPI"):
        own = loop is None
        try:
            import asyncio

            if own:
                loop = asyncio.new_event_loop()
            try:
                loop.run_until_complete(asyncio.wait_for(_warm_fastapi(fastapi), WARM_TIMEOUT))
            finally:
                if own:
                    loop.close()
        except Exception:  # pragma: no cover - a warm-up only
            pass
    flask = sys.modules.get("flask")
    if flask is not None and hasattr(flask, "Flask"):
        try:
            _warm_flask(flask)
        except Exception:  # pragma: no cover - a warm-up only
            pass


async def _warm_fastapi(fastapi: Any) -> None:
    from .asgi import ASGIAdapter

    app = fastapi.FastAPI()

    async def index() -> Any:
        return {"items": [{"id": 1, "name": "x"}]}

    async def item(item_id: int, q: str = "") -> Any:
        return {"id": item_id, "q": q}

    app.get("/_fnserve_warm")(index)
    app.get("/_fnserve_warm/{item_id}")(item)
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and hasattr(pydantic, "BaseModel"):
        Body = type("Body", (pydantic.BaseModel,), {"__annotations__": {"name": str, "size": int}})

        async def create(body: Any) -> Any:
            return body

        create.__annotations__ = {"body": Body, "return": Body}
        app.post("/_fnserve_warm")(create)
    adapter = ASGIAdapter(app, label="warm-up")
    await adapter.startup()
    for path in ("/_fnserve_warm", "/_fnserve_warm/1"):
        await adapter(_scope(path), _Receive(), _ignore)
    await adapter.shutdown(1.0)


def _warm_flask(flask: Any) -> None:
    import io

    from .wsgi import build_environ

    here = os.path.dirname(os.path.abspath(__file__))
    app = flask.Flask("_fnserve_warm", root_path=here, instance_path=os.path.join(here, "instance"))

    def index() -> Any:
        return flask.jsonify(framework="warm", items=[1, 2])

    def hello(name: str) -> Any:
        return flask.jsonify(message="hello " + name)

    app.add_url_rule("/_fnserve_warm", "index", index, methods=["GET"])
    app.add_url_rule("/_fnserve_warm/hello/<name>", "hello", hello)
    for path in ("/_fnserve_warm", "/_fnserve_warm/hello/x"):
        body = app.wsgi_app(build_environ(_scope(path), io.BytesIO(b"")), lambda status, headers, exc_info=None: len)
        try:
            for _chunk in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()


def _scope(path: str) -> Dict[str, Any]:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
            "scheme": "http", "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"warm")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
            "fnserve.route_params": {}}


class _Receive:
    def __init__(self) -> None:
        self.sent = False

    async def __call__(self) -> Message:
        if self.sent:
            return {"type": "http.disconnect"}
        self.sent = True
        return {"type": "http.request", "body": b"", "more_body": False}


async def _ignore(message: Message) -> None:
    return None


def _max_fd() -> int:
    try:
        return max(int(n) for n in os.listdir("/proc/self/fd")) + 1
    except (OSError, ValueError):
        return os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024
