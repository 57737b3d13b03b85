"""Helpers shared by the IPC / supervisor tests: stand-in function apps written into a temporary
project, targets for them, and an in-memory ASGI client that drives ``upstream.forward``.

(No tests here; the module is imported by test_ipc_*.py and test_supervisor_*.py.)
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path
from typing import Any

from fnserve.project.types import Entry, EntryKind, Function, Layout
from fnserve.server.upstream import forward
from fnserve.supervisor import Supervisor, WorkerTarget

# A raw ASGI app covering every behaviour the tests need. Stdlib only: it runs in the worker.
APP = '''
import asyncio, os, sys

STATE = {"started": False}

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                STATE["started"] = True
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                marker = os.environ.get("SHUTDOWN_MARKER")
                if marker:
                    with open(marker, "w") as f:
                        f.write("shutdown")
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        message = await receive()
        assert message["type"] == "websocket.connect"
        await send({"type": "websocket.accept", "subprotocol": None})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") == "close":
                await send({"type": "websocket.close", "code": 1000})
                return
            if message.get("bytes") is not None:
                await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})
            else:
                await send({"type": "websocket.send", "text": "echo:" + message["text"]})
    path = scope["path"]
    query = scope["query_string"].decode()
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body") or path in ("/upload-stream", "/ignore-body"):
            break
    headers = [(b"content-type", b"application/octet-stream"), (b"x-pid", str(os.getpid()).encode())]
    if path == "/crash":
        os._exit(1)
    if path == "/raise":
        raise ValueError("boom from the function")
    if path == "/block":  # blocks the event loop: no heartbeats
        import time
        time.sleep(float(query or "5"))
    if path == "/slow":
        await asyncio.sleep(float(query or "0.2"))
    if path == "/stream":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"chunk%d;" % i, "more_body": True})
            await asyncio.sleep(0.3)
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if path == "/ignore-body":  # never reads the rest of its (large) body
        await asyncio.sleep(float(query or "1"))
    if path == "/big-stream":  # query: number of 64 KB chunks
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for i in range(int(query)):
            await send({"type": "http.response.body", "body": b"x" * 65536, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return
    if path == "/upload-stream":
        # answer with one line per request chunk, as each arrives
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"got:" + body + b"\\n", "more_body": True})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await send({"type": "http.response.body", "body": b"got:" + message.get("body", b"") + b"\\n",
                        "more_body": message.get("more_body", False)})
            if not message.get("more_body"):
                return
    if path == "/wait-disconnect":
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"waiting", "more_body": True})
        message = await receive()
        with open(os.environ["DISCONNECT_MARKER"], "w") as f:
            f.write(message["type"])
        return
    if path == "/import-click":
        try:
            import click  # noqa: F401
            out = b"click importable"
        except ImportError:
            out = b"no click"
        out += b"|" + sys.executable.encode() + b"|" + repr(sys.path).encode()
    elif path == "/env":
        out = os.environ.get(query, "<unset>").encode()
    elif path == "/print":
        print("hello from the function")  # no flush: the worker's stdout is unbuffered
        out = b"printed"
    elif path == "/headers":
        out = repr([(k, v) for k, v in scope["headers"]]).encode()
    else:
        out = body if body else (b"ok:" + path.encode() + b"?" + scope["query_string"])
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})
'''

SLOW_IMPORT = '''
import time
time.sleep(5)
async def app(scope, receive, send):
    pass
'''

BROKEN = '''
import json
raise RuntimeError("this module is broken on purpose")
app = None
'''


def make_project(root: Path, files: dict[str, str]) -> Path:
    """Write ``files`` (relative path → source) under ``root``; returns ``root``."""
    for rel, source in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
    return root


def make_target(root: Path, rel: str, *, python: Path | None = None, env: dict | None = None) -> WorkerTarget:
    """A Vercel-layout target for ``root/rel`` exporting ``app``."""
    module = rel[:-3].replace("/", ".")
    function = Function(
        id=rel,
        path=root / rel,
        module=module,
        layout=Layout.VERCEL,
        entry=Entry(EntryKind.APP, "app", 1),
        import_roots=(root,),
    )
    return WorkerTarget.from_function(function, root, python=python, env=env)


def http_scope(path: str, method: str = "GET", query: bytes = b"", headers: list | None = None) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "headers": headers or [(b"host", b"test")],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
        "fnserve.route_params": {},
    }


class Client:
    """An in-memory ASGI server side for one request: ``receive`` yields ``body_chunks`` then
    blocks until ``disconnect()``; ``send`` collects messages (``.events`` keeps arrival times)."""

    def __init__(self, body_chunks: list[bytes] | None = None) -> None:
        self.inbox: asyncio.Queue = asyncio.Queue()
        chunks = body_chunks if body_chunks is not None else [b""]
        for i, chunk in enumerate(chunks):
            self.inbox.put_nowait({"type": "http.request", "body": chunk, "more_body": i < len(chunks) - 1})
        self.messages: list[dict] = []
        self.times: list[float] = []
        self.got_message = asyncio.Event()

    async def receive(self) -> dict:
        return await self.inbox.get()

    async def send(self, message: dict) -> None:
        self.messages.append(message)
        self.times.append(asyncio.get_running_loop().time())
        self.got_message.set()

    def disconnect(self) -> None:
        self.inbox.put_nowait({"type": "http.disconnect"})

    @property
    def status(self) -> int:
        return self.messages[0]["status"]

    @property
    def headers(self) -> dict[bytes, bytes]:
        return dict(self.messages[0]["headers"])

    @property
    def body(self) -> bytes:
        return b"".join(m.get("body", b"") for m in self.messages[1:])


async def request(sup: Supervisor, fid: str, path: str, *, body_chunks: list[bytes] | None = None,
                  method: str = "GET", query: bytes = b"") -> Client:
    """One request through ``acquire`` + ``forward``; returns the finished ``Client``."""
    client = Client(body_chunks)
    conn = await sup.acquire(fid)
    await forward(conn, http_scope(path, method, query), client.receive, client.send)
    return client


def run(coro: Any, timeout: float = 60.0) -> Any:
    """Run ``coro`` in a fresh event loop, bounded by ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


def pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is dead for our purposes
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
