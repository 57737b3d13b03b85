"""Helpers for test_supervisor_{scaling,zygote,limits}.py: stand-in functions, targets with
limits, and a real uvicorn front (port 0) running ``SupervisorDispatcher`` so HTTP statuses
(503 + Retry-After, 504, 502) are the ones ``fnserve`` answers.

(No tests here; imported by the test modules.)
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from fnserve.config import FunctionLimits
from fnserve.errors import FnserveError
from fnserve.project.types import Entry, EntryKind, Function, Layout
from fnserve.server import errorpages
from fnserve.server.dispatch import SupervisorDispatcher
from fnserve.supervisor import Supervisor, WorkerTarget

sys.path.insert(0, str(Path(__file__).parents[1]))
from ipc_support import make_project, pid_alive

# A WSGI function (a sync kind: concurrency is a thread pool). Stdlib only.
SYNC_APP = '''
import os, time

def app(environ, start_response):
    path, query = environ["PATH_INFO"], environ.get("QUERY_STRING", "")
    if path == "/sleep":
        time.sleep(float(query or "0.2"))
    elif path == "/alloc":  # query: MB to allocate, in 64 MB steps (each step touches its pages)
        blocks = []
        for _ in range(int(query) // 64):
            blocks.append(b"x" * (64 << 20))
            time.sleep(0.02)
    elif path == "/spin":  # CPU-bound in the handler's thread: the worker's loop still beats
        end = time.monotonic() + float(query or "1")
        while time.monotonic() < end:
            sum(range(1000))
    elif path == "/exit":
        os._exit(1)
    elif path == "/segv":
        import ctypes
        ctypes.string_at(0)
    start_response("200 OK", [("content-type", "text/plain"), ("x-pid", str(os.getpid()))])
    return [str(os.getpid()).encode()]
'''

# An ASGI function reporting what fork safety is about.
PROBE_APP = '''
import asyncio, os, random, sys

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    fds = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            fds[fd] = os.readlink("/proc/self/fd/" + fd)
        except OSError:
            pass
    if scope["path"] == "/print":
        print("hello from", os.getpid())
    if scope["path"] == "/slow":
        await asyncio.sleep(0.3)
    body = repr({"pid": os.getpid(), "ppid": os.getppid(), "sid": os.getsid(0), "random": random.random(),
                 "fds": fds, "modules": sorted(m for m in ("fastapi", "flask") if m in sys.modules)}).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-pid", str(os.getpid()).encode())]})
    await send({"type": "http.response.body", "body": body})
'''


def limits(**overrides: Any) -> FunctionLimits:
    """A ``FunctionLimits`` (as ``config.limits_for`` returns) with test-friendly defaults."""
    values: dict[str, Any] = dict(max_duration=300.0, memory=1024, concurrency=16, min_instances=0,
                                  max_instances=2, idle_timeout=60.0, queue_size=100)
    values.update(overrides)
    return FunctionLimits(**values)


def function(root: Path, rel: str) -> Function:
    return Function(id=rel, path=root / rel, module=rel[:-3].replace("/", "."), layout=Layout.VERCEL,
                    entry=Entry(EntryKind.APP, "app", 1), import_roots=(root,))


def target(root: Path, rel: str, lim: Any = None) -> WorkerTarget:
    return WorkerTarget.from_function(function(root, rel), root, limits=lim)


def front(sup: Supervisor, functions: dict[str, Function]) -> Any:
    """``/<stem>/<rest>`` → function ``api/<stem>.py`` through ``SupervisorDispatcher`` (no
    dispatcher-side maxDuration: the supervisor enforces the targets' limits)."""
    dispatcher = SupervisorDispatcher(sup)

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        stem, _, rest = scope["path"].strip("/").partition("/")
        scope = dict(scope, path="/" + rest)
        try:
            await dispatcher(functions[f"api/{stem}.py"], scope, receive, send)
        except FnserveError as exc:
            if exc.status_code is None or exc.response_started:
                raise
            await errorpages.send_exception(scope, send, exc, dev=False)

    return app


@contextlib.asynccontextmanager
async def serving(sup: Supervisor, functions: dict[str, Function]) -> AsyncIterator[httpx.AsyncClient]:
    """uvicorn on 127.0.0.1:0 in front of ``sup``; yields an httpx client for it."""
    config = uvicorn.Config(front(sup, functions), host="127.0.0.1", port=0, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    try:
        for _ in range(500):
            if server.started:
                break
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        limits_ = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30, limits=limits_) as client:
            yield client
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


async def wait_dead(pid: int, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.02)):
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


def kill_all(pids: Any) -> None:
    """Finalizer: SIGKILL whatever is left (tests must leave no process behind)."""
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, 9)


__all__ = ["PROBE_APP", "SYNC_APP", "function", "front", "kill_all", "limits", "make_project", "pid_alive",
           "serving", "target", "wait_dead"]
