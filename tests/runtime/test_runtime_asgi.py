"""The ASGI adapter and lifespan manager (ASGI 3.0, SPEC §4): in memory and through uvicorn."""

import asyncio
import json
import time

import httpx
import pytest
import runtime_harness as H

from fnserve.runtime.asgi import ASGIAdapter, below_root
from fnserve.runtime.failures import LoadError
from fnserve.runtime.loader import load_function


@pytest.fixture
def fast(tmp_path, monkeypatch):
    root = H.project("runtime_vercel", tmp_path)
    monkeypatch.chdir(root)
    with H.isolated(root):
        fn = load_function(H.spec(root, "api/fast.py"))
        assert fn.kind == "asgi"
        yield fn


def test_lifespan_once_across_100_requests_and_state(fast):
    counts = fast.module.COUNTS
    with H.LiveServer(fast.app, fast) as server, httpx.Client(base_url=server.url) as client:
        for _ in range(100):
            data = client.get("/api/fast/count").json()
        assert data == {"startup": 1, "shutdown": 0, "state": "hi"}
    assert counts == {"startup": 1, "shutdown": 1}


def test_background_task_finishes_after_response_and_before_shutdown(fast):
    jobs = fast.module.JOBS
    with H.LiveServer(fast.app, fast) as server:
        r = httpx.get(server.url + "/api/fast/bg")
        answered = time.monotonic()
        assert r.status_code == 200 and jobs == []  # the response did not wait for the job
    assert len(jobs) == 1 and jobs[0] > answered and jobs[0] > r.json()["queued"]


def test_shutdown_waits_for_background_work_in_memory(fast):
    async def main():
        await fast.startup()
        await H.acall(fast.app, H.http_scope(path="/api/fast/bg"))
        await fast.shutdown(5.0)

    asyncio.run(main())
    assert len(fast.module.JOBS) == 1 and fast.module.COUNTS["shutdown"] == 1


def test_sse_cookies_json_query_through_uvicorn(fast):
    with H.LiveServer(H.Front(fast.app, params={"slug": "x"}), fast) as server, httpx.Client(base_url=server.url) as client:
        with client.stream("GET", "/api/fast/sse") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            arrivals = [(time.time(), chunk) for chunk in r.iter_raw()]
        assert len(arrivals) == 3
        assert arrivals[0][0] < float(arrivals[-1][1].split(b"|")[1].strip())
        cookies = client.get("/api/fast/cookies").headers.get_list("set-cookie")
        assert [c.split(";")[0] for c in cookies] == ["a=1", "b=2"]
        payload = {"name": "Zoë", "city": "東京"}
        r = client.post("/api/fast/json", content=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                        headers={"content-type": "application/json"})
        assert r.json() == dict(payload, seen=True)
        for query in ("say%20hello=nice", "%E6%82%A8%E5%A5%BD=%2F"):
            data = client.get(httpx.URL(server.url + "/api/fast/query?" + query)).json()
            assert data == {"raw": query, "params": {"slug": "x"}}


def test_websocket_echo(fast):
    from websockets.sync.client import connect

    with H.LiveServer(fast.app, fast) as server:
        with connect("ws://127.0.0.1:%d/api/fast/ws" % server.port, open_timeout=5) as ws:
            ws.send("hello")
            assert ws.recv(timeout=5) == "echo:hello"
            ws.send("bye")


def run(coro):
    return asyncio.run(coro)


def test_app_without_lifespan_support_is_served():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            raise RuntimeError("only http here")
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        adapter = ASGIAdapter(app, label="api/x.py")
        await adapter.startup()
        result = await H.acall(adapter, H.http_scope())
        await adapter.shutdown(1.0)
        return adapter.lifespan.supported, result

    supported, (status, _, body, _) = run(main())
    assert (supported, status, body) == (False, 200, b"ok")


def test_app_returning_without_receive_is_tolerated():
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    async def main():
        adapter = ASGIAdapter(app)
        await adapter.startup()
        return (await H.acall(adapter, H.http_scope()))[0]

    assert run(main()) == 204


def test_startup_failed_is_a_load_error():
    async def app(scope, receive, send):
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})

    async def main():
        await ASGIAdapter(app, label="api/db.py").startup()

    with pytest.raises(LoadError) as info:
        run(main())
    assert "api/db.py" in str(info.value) and "database unreachable" in str(info.value)
    assert info.value.found == "lifespan.startup.failed"


def test_state_is_a_shallow_copy_per_request():
    seen = []

    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            await receive()
            scope["state"]["db"] = "conn"
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        seen.append(dict(scope["state"]))
        scope["state"]["mutated"] = True
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main():
        adapter = ASGIAdapter(app)
        await adapter.startup()
        await H.acall(adapter, H.http_scope())
        await H.acall(adapter, H.http_scope())
        await adapter.shutdown(1.0)

    run(main())
    assert seen == [{"db": "conn"}, {"db": "conn"}]


def test_shutdown_wait_is_bounded_by_its_timeout():
    async def app(scope, receive, send):
        if scope["type"] == "lifespan":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})
        await asyncio.sleep(30)  # background work that never ends in time

    async def main():
        adapter = ASGIAdapter(app)
        await adapter.startup()
        task = asyncio.ensure_future(adapter(H.http_scope(), _receive, _drop))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await adapter.shutdown(0.3)
        elapsed = time.monotonic() - started
        task.cancel()
        return elapsed

    assert run(main()) < 1.5


async def _receive():
    return {"type": "http.request", "body": b"", "more_body": False}


async def _drop(message):
    pass


# --- EdgeOne mounts: path and raw_path below root_path (SPEC §3.4) ---------------------------


@pytest.mark.parametrize(
    "path, raw_path, root, want_path, want_raw",
    [
        ("/api/sanic/users", b"/api/sanic/users", "/api/sanic", "/users", b"/users"),
        ("/api/sanic", b"/api/sanic", "/api/sanic", "/", b"/"),
        ("/api/sanic/", b"/api/sanic/", "/api/sanic", "/", b"/"),
        ("/api/sanic/a b/c/", b"/api/sanic/a%20b/c/", "/api/sanic", "/a b/c/", b"/a%20b/c/"),  # encoding kept
        ("/api/s\u00e9/x", b"/api/s%C3%A9/x", "/api/s\u00e9", "/x", b"/x"),
        ("/api/sanic/x", b"/api/s%61nic/x", "/api/sanic", "/x", b"/x"),  # an encoded prefix is still the prefix
        ("/api/a/b/x", b"/api/a%2Fb/x", "/api/a/b", "/x", b"/x"),  # segments disagree: re-encoded from path
        ("/apihealth", b"/apihealth", "/api", "/apihealth", b"/apihealth"),  # not at a segment boundary
    ],
)
def test_below_root(path, raw_path, root, want_path, want_raw):
    scope = H.http_scope(path=path, raw_path=raw_path, root_path=root)
    out = below_root(scope)
    assert (out["path"], out["raw_path"], out["root_path"]) == (want_path, want_raw, root)
    assert scope["path"] == path  # the caller's scope is not changed


def test_adapter_gives_edgeone_form_only_with_a_root_path():
    seen = []

    async def app(scope, receive, send):
        seen.append((scope["path"], scope["raw_path"], scope["root_path"]))
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    adapter = ASGIAdapter(app)
    H.call(adapter, H.http_scope(path="/api/sanic/users", root_path="/api/sanic"))
    H.call(adapter, H.http_scope(path="/api/sanic/users"))
    assert seen == [("/users", b"/users", "/api/sanic"), ("/api/sanic/users", b"/api/sanic/users", "")]
