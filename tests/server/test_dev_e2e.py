"""``fnserve dev`` end to end: a subprocess on port 0 serving fixture projects, spoken to with
httpx (issue 4 acceptance). Functions run with the current interpreter (``--no-install``)."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest
from devserver import DevServer, raw_get
from websockets.sync.client import connect


def start(case: str, tmp_path_factory, *args: str) -> DevServer:
    server = DevServer(case, tmp_path_factory.mktemp(case), "--no-install", *args)
    server.start()
    return server


@pytest.fixture(scope="module")
def vercel(tmp_path_factory):
    # --handler-log show: the handler classes' own request lines are the function output test_access_log reads
    server = start("dev_vercel", tmp_path_factory, "--body-limit", "64KiB", "--handler-log", "show")
    yield server
    server.stop()
    out = server.output()
    assert "unhandled exception" not in out and "never retrieved" not in out, out[-3000:]


@pytest.fixture(scope="module")
def client(vercel):
    with httpx.Client(base_url=vercel.url, timeout=15, follow_redirects=False) as c:
        yield c


def test_startup_prints_routes_and_url(vercel: DevServer) -> None:
    out = vercel.output()
    assert "/api/users/[id]" in out and "api/flask_app.py" in out
    assert vercel.url.startswith("http://127.0.0.1:") and not vercel.url.endswith(":0")


def test_every_kind(client: httpx.Client) -> None:
    r = client.get("/api/hello")
    assert r.json()["message"] == "hello v1"
    # send_response's own Server/Date are left out: one Date (the front's), no BaseHTTP banner
    assert len(r.headers.get_list("date")) == 1 and "BaseHTTP" not in r.headers.get("server", "")
    j = client.get("/api/flask_app/a/b?q=1").json()
    assert j == {**j, "kind": "wsgi", "path": "/api/flask_app/a/b", "script_name": "", "query": "q=1"}
    j = client.get("/api/fast/x/y?z=1").json()
    assert j == {**j, "kind": "asgi", "path": "/api/fast/x/y", "root_path": "", "query": "z=1"}
    j = client.get("/api/lam?x=1").json()
    assert j == {"kind": "lambda", "rawPath": "/api/lam", "rawQueryString": "x=1"}


def test_dynamic_and_catch_all(client: httpx.Client) -> None:
    assert client.get("/api/users/42?y=2").json()["path"] == "/api/users/42?y=2&id=42"
    assert client.get("/api/users/7").json()["path"] == "/api/users/7?id=7"
    p = client.get("/api/files/a/b/c").json()["path"]
    assert p.startswith("/api/files/a/b/c?...path=")
    assert client.get("/api/users/1/2").status_code == 404


def test_static_files(client: httpx.Client, vercel: DevServer) -> None:
    r = client.get("/hello.txt")
    assert r.text == "hello static\n" and r.headers["content-type"].startswith("text/plain")
    assert client.get("/hello.txt", headers={"If-None-Match": r.headers["etag"]}).status_code == 304
    assert client.get("/hello.txt", headers={"If-Modified-Since": r.headers["last-modified"]}).status_code == 304
    r = client.get("/blob.bin", headers={"Range": "bytes=256-511"})
    assert r.status_code == 206 and r.content == bytes(range(256))
    assert client.get("/blob.bin", headers={"Range": "bytes=99999-"}).status_code == 416
    h = client.head("/style.css")
    assert h.status_code == 200 and h.content == b"" and h.headers["content-length"] == "16"
    assert client.get("/").text == "<h1>home</h1>\n"
    for target in ("/../vercel.json", "/%2e%2e/.env", "/docs/%2E%2E/%2e%2e/.env", "/.env", "/public/.env", "/source.py", "/%2eenv"):
        status, data = raw_get(vercel.url, target)
        assert status == 404, (target, data)
        assert b"s3cret" not in data and b"PUBLIC_DOTFILE" not in data and b"print(" not in data


def test_redirects_rewrites_headers(client: httpx.Client) -> None:
    r = client.get("/old-user/5?x=1")
    assert r.status_code == 308 and r.headers["location"] == "/api/users/5?x=1"
    assert client.get("/temp").status_code == 307
    j = client.get("/u/7?z=1").json()
    assert j["path"].startswith("/u/7?z=1&") and "id=7" in j["path"]  # the function sees the original URL
    assert client.get("/h").json()["path"] == "/h"
    assert client.get("/api/hello").headers["x-fnserve-test"] == "custom"
    assert client.get("/hello.txt").headers["x-static"] == "yes"
    assert "x-fnserve-test" not in client.get("/hello.txt").headers


def test_clean_urls_and_trailing_slash(client: httpx.Client) -> None:
    assert client.get("/about").text == "<h1>about</h1>\n"
    r = client.get("/about.html")
    assert r.status_code == 308 and r.headers["location"] == "/about"
    r = client.get("/api/hello/?a=1")
    assert r.status_code == 308 and r.headers["location"] == "/api/hello?a=1"


def test_env_files_reach_functions_only(client: httpx.Client, vercel: DevServer) -> None:
    j = client.get("/api/env").json()
    assert j["secret"] == "s3cret-from-dotenv" and j["local"] == "local-value"
    environ = Path(f"/proc/{vercel.proc.pid}/environ").read_bytes()
    assert b"DEV_SECRET_TOKEN" not in environ and b"DEV_LOCAL_ONLY" not in environ


def test_errors_json_and_html(client: httpx.Client) -> None:
    r = client.get("/nope")
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    r = client.get("/nope", headers={"Accept": "text/html,application/xhtml+xml"})
    assert r.status_code == 404 and "<html>" in r.text


def test_crash_gives_502_then_recovers(client: httpx.Client) -> None:
    assert client.get("/api/crash").status_code == 200
    other = client.get("/api/pid").text
    results: list[int] = []

    def other_requests() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=10) as c:
            for _ in range(20):
                results.append(c.get("/api/pid").status_code)

    t = threading.Thread(target=other_requests)
    t.start()
    r = client.get("/api/crash?die=1")
    t.join()
    assert r.status_code == 502 and r.json()["error"]["code"] == "NO_RESPONSE_FROM_FUNCTION"
    assert results == [200] * 20
    assert client.get("/api/crash").status_code == 200
    assert client.get("/api/pid").text == other


def test_websocket_echo(vercel: DevServer) -> None:
    with connect(vercel.url.replace("http://", "ws://") + "/api/fast/ws", open_timeout=15) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "echo: hi"
        ws.send("again")
        assert ws.recv(timeout=10) == "echo: again"


def test_access_log(vercel: DevServer, client: httpx.Client) -> None:
    client.get("/api/users/3?y=1")
    line = vercel.wait_for_line(r"GET /api/users/3\?y=1 200 [0-9.]+ms api/users/\[id\]\.py")
    assert "\x1b[" not in line  # not a TTY: no colour codes
    assert vercel.wait_for_line(r"^\[/api/users/\[id\] !\] .*GET /api/users/3\?y=1&id=3")  # function output (stderr), prefixed


# --- EdgeOne layout ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def edgeone(tmp_path_factory):
    server = start("dev_edgeone", tmp_path_factory)
    yield server
    server.stop()


def test_edgeone_prefix_strip(edgeone: DevServer) -> None:
    with httpx.Client(base_url=edgeone.url, timeout=15) as c:
        j = c.get("/api/flaskapp/users").json()
        assert j == {"path_info": "/users", "script_name": "/api/flaskapp", "url": "/api/flaskapp/x"}
        assert c.get("/api/flaskapp").json()["path_info"] == "/"
        assert c.get("/api/flaskappX").status_code == 404
        assert c.get("/api/hello?a=1").text == "edgeone hello /api/hello?a=1"
        assert c.get("/api/items/a/b").json()["path"] == "/api/items/a/b"


# --- zero-config single app -------------------------------------------------------------------
def test_rewrite_to_single_app_sees_rewritten_path(tmp_path_factory) -> None:
    server = start("dev_app", tmp_path_factory)
    try:
        with httpx.Client(base_url=server.url, timeout=15) as c:
            assert c.get("/old/a/b?k=v").json() == {"path": "/new/a/b", "query": "k=v"}
            assert c.get("/other").json()["path"] == "/other"
    finally:
        server.stop()


def test_max_duration_gives_504(client: httpx.Client) -> None:
    t0 = time.monotonic()
    r = client.get("/api/slow")
    assert r.status_code == 504 and r.json()["error"]["code"] == "FUNCTION_INVOCATION_TIMEOUT"
    assert time.monotonic() - t0 < 4
    assert client.get("/api/hello").status_code == 200


def test_body_over_limit_gives_413(client: httpx.Client) -> None:
    r = client.post("/api/flask_app/upload", content=b"x" * (64 * 1024 + 1))
    assert r.status_code == 413 and r.json()["error"]["code"] == "FUNCTION_PAYLOAD_TOO_LARGE"
    assert client.post("/api/flask_app/upload", content=b"x" * 100).status_code == 405  # reached Flask


def test_chunked_body_over_limit_gives_413_for_an_asgi_function(client: httpx.Client) -> None:
    def chunks(total: int):  # no Content-Length: httpx sends Transfer-Encoding: chunked
        for _ in range(total // 4096):
            yield b"x" * 4096

    r = client.post("/api/fast/upload", content=chunks(80 * 1024))
    assert r.status_code == 413 and r.json()["error"]["code"] == "FUNCTION_PAYLOAD_TOO_LARGE"
    r = client.post("/api/fast/upload", content=chunks(16 * 1024))
    assert r.status_code == 200 and r.json() == {"received": 16 * 1024}
    assert client.get("/api/fast/x").status_code == 200  # the function still serves


def test_dev_enforces_memory_and_max_duration_like_start(tmp_path_factory) -> None:
    """One limits path (issue 12 item 3, issue 10 item 16): ``fnserve dev`` kills an instance over
    its ``memory`` (502) or past its ``maxDuration`` (504) with start's messages, then serves on."""
    from fnserve.errors import DurationExceeded, MemoryExceeded

    server = start("dev_limits", tmp_path_factory)
    try:
        with httpx.Client(base_url=server.url, timeout=15) as c:
            pid = c.get("/api/hog").headers["x-pid"]
            r = c.get("/api/hog?alloc=1024")
            assert r.status_code == 502 and r.json()["error"]["code"] == "NO_RESPONSE_FROM_FUNCTION", r.text
            assert r.json()["error"]["message"].startswith(MemoryExceeded("api/hog.py", 160, None).message.split(" and")[0])
            r = c.get("/api/hog")
            assert r.status_code == 200 and r.headers["x-pid"] != pid
            began = time.monotonic()
            r = c.get("/api/hog?sleep=10")
            assert r.status_code == 504 and time.monotonic() - began < 3
            assert r.json()["error"]["message"] == DurationExceeded("api/hog.py", 1.0).message
            assert c.get("/api/hog").status_code == 200
    finally:
        server.stop()


def test_ctrl_c_stops_workers_and_says_so(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) to ``fnserve dev`` alone: its workers stop, it says "stopped", exit 0."""
    server = DevServer("dev_vercel", tmp_path, "--no-install")
    server.start()
    try:
        pid = httpx.get(server.url + "/api/pid", timeout=10).text
        assert server.proc is not None
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(15) == 0
        server.wait_for_line(r"fnserve dev: stopped")
        assert not Path(f"/proc/{int(pid)}").exists() or "Z" in Path(f"/proc/{int(pid)}/stat").read_text().split()[2]
    finally:
        server.stop()
