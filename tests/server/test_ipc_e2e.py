"""End to end: uvicorn on 127.0.0.1:0 running a tiny front app (acquire + forward), real
workers behind it, httpx and a WebSocket client in front."""

from __future__ import annotations

import asyncio
import json

import httpx
import uvicorn
import websockets
from ipc_support import APP, BROKEN, make_project, make_target, run

from fnserve.errors import FunctionFailed, FunctionLoadFailed, WorkerCrashed
from fnserve.server.upstream import forward
from fnserve.supervisor import Supervisor


def front_app(sup: Supervisor):
    """A minimal front: ``/<function file stem>/<rest>`` → function ``api/<stem>.py``."""

    async def app(scope, receive, send):
        stem = scope["path"].strip("/").split("/")[0]
        scope = dict(scope, path="/" + scope["path"].strip("/").partition("/")[2])
        try:
            conn = await sup.acquire(f"api/{stem}.py")
            await forward(conn, scope, receive, send)
        except (FunctionLoadFailed, WorkerCrashed, FunctionFailed) as exc:
            if scope["type"] != "http" or getattr(exc, "response_started", False):
                raise
            body = json.dumps({"error": {"code": exc.status_code, "message": exc.message}}).encode()
            await send({"type": "http.response.start", "status": exc.status_code,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})

    return app


def test_uvicorn_front_to_workers_http_websocket_and_errors(tmp_path):
    root = make_project(tmp_path, {"api/a.py": APP, "api/broken.py": BROKEN})

    async def main():
        targets = [make_target(root, "api/a.py"), make_target(root, "api/broken.py")]
        async with Supervisor(targets) as sup:
            config = uvicorn.Config(front_app(sup), host="127.0.0.1", port=0, lifespan="off", log_level="warning")
            server = uvicorn.Server(config)
            serving = asyncio.ensure_future(server.serve())
            try:
                for _ in range(500):
                    if server.started:
                        break
                    await asyncio.sleep(0.01)
                port = server.servers[0].sockets[0].getsockname()[1]
                base = f"http://127.0.0.1:{port}"
                async with httpx.AsyncClient(base_url=base, timeout=10) as client:
                    r = await client.get("/a/hello?q=1")
                    assert (r.status_code, r.content) == (200, b"ok:/hello?q=1")
                    payload = bytes(range(256)) * 4096
                    r = await client.post("/a/echo", content=payload)
                    assert r.content == payload
                    rs = await asyncio.gather(*(client.get("/a/slow?0.2") for _ in range(30)))
                    assert {r.status_code for r in rs} == {200}
                    async with client.stream("GET", "/a/stream") as r:
                        chunks = [c async for c in r.aiter_raw()]
                    assert b"".join(chunks) == b"chunk0;chunk1;chunk2;"
                    r = await client.get("/broken/x")
                    assert r.status_code == 500 and "failed to load" in r.json()["error"]["message"]
                    r = await client.get("/a/crash")
                    assert r.status_code == 502
                    r = await client.get("/a/after-crash")
                    assert r.status_code == 200
                async with websockets.connect(f"ws://127.0.0.1:{port}/a/ws") as ws:
                    await ws.send("hi")
                    assert await ws.recv() == "echo:hi"
                    await ws.send(b"\x01\x02")
                    assert await ws.recv() == b"\x02\x01"
            finally:
                server.should_exit = True
                await asyncio.wait_for(serving, 10)

    run(main())
