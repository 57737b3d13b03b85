"""The WSGI adapter (PEP 3333, SPEC §3.4, §4): in memory and through uvicorn with httpx."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import runtime_harness as H


@pytest.fixture
def raw(load):
    fn = load("runtime_vercel", "api/wsgi_raw.py")
    assert fn.kind == "wsgi"
    return fn


def values(headers, name):
    return [v for k, v in headers if k == name]


def test_environ_per_pep3333(raw):
    scope = H.http_scope("POST", "/api/m/caf\u00e9/x", query=b"say%20hello=nice&%E6%82%A8%E5%A5%BD=%2F",
                         headers=[("X-Multi", "1"), ("X-Multi", "2"), ("Content-Type", "text/plain"),
                                  ("Content-Length", "0")], root_path="/api/m", params={"id": "7"})
    status, _, body, _ = H.call(raw.app, scope)
    env = json.loads(body)
    assert status == 200
    assert env["SCRIPT_NAME"] == "/api/m"
    assert env["PATH_INFO"] == "/caf\u00e9/x".encode("utf-8").decode("latin-1")  # PEP 3333 native string
    assert env["QUERY_STRING"] == "say%20hello=nice&%E6%82%A8%E5%A5%BD=%2F"
    assert (env["CONTENT_TYPE"], env["CONTENT_LENGTH"]) == ("text/plain", "0")
    assert (env["SERVER_NAME"], env["SERVER_PORT"], env["SERVER_PROTOCOL"]) == ("127.0.0.1", "8000", "HTTP/1.1")
    assert (env["REMOTE_ADDR"], env["REMOTE_PORT"], env["HTTP_HOST"]) == ("127.0.0.1", "50000", "testserver")
    assert env["HTTP_X_MULTI"] == "1,2"
    assert env["wsgi.multithread"] is True and env["wsgi.run_once"] is False
    assert env["fnserve.route_params"] == {"id": "7"}


def test_environ_headers_join_override_and_many_names():
    """Repeated headers join (cookies with "; "), a repeated Content-Type keeps the last value, and
    any number of distinct names is mapped (the name → key cache stays bounded)."""
    from fnserve.runtime import wsgi

    names = [(f"x-n{i}".encode(), str(i).encode()) for i in range(wsgi._KEYS_MAX + 100)]
    scope = {"type": "http", "method": "GET", "path": "/a b", "raw_path": b"/a%20b", "query_string": b"",
             "headers": [(b"cookie", b"a=1"), (b"cookie", b"b=2"), (b"content-type", b"text/a"),
                         (b"content-type", b"text/b"), *names]}
    env = wsgi.build_environ(scope, None)
    assert env["HTTP_COOKIE"] == "a=1; b=2" and env["CONTENT_TYPE"] == "text/b" and "HTTP_CONTENT_TYPE" not in env
    assert all(env[f"HTTP_X_N{i}"] == str(i) for i in range(len(names)))
    assert len(wsgi._KEYS) <= wsgi._KEYS_MAX
    assert (env["PATH_INFO"], env["SERVER_PROTOCOL"]) == ("/a b", "HTTP/1.1")
    plain = wsgi.build_environ({**scope, "path": "/x/y", "raw_path": b"/x/y", "http_version": "1.0"}, None)
    assert (plain["PATH_INFO"], plain["SERVER_PROTOCOL"]) == ("/x/y", "HTTP/1.0")


def test_mount_boundary_and_empty_rest(raw):
    env = json.loads(H.call(raw.app, H.http_scope(path="/api/m", root_path="/api/m"))[2])
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("/api/m", "/")
    env = json.loads(H.call(raw.app, H.http_scope(path="/api/x"))[2])
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == ("", "/api/x")


def test_cookies_write_excinfo_and_errors(raw, capsys):
    _, headers, body, _ = H.call(raw.app, H.http_scope(path="/cookies"))
    assert values(headers, b"set-cookie") == [b"a=1", b"b=2"] and body == b"ok"
    assert H.call(raw.app, H.http_scope(path="/write"))[2] == b"first,second"
    status, _, body, _ = H.call(raw.app, H.http_scope(path="/excinfo"))
    assert (status, body) == (500, b"recovered")  # headers not sent yet: exc_info replaces them
    status, _, body, _ = H.call(raw.app, H.http_scope(path="/boom"))
    assert status == 500 and json.loads(body)["error"]["code"] == "function_error"
    assert "kaboom" in capsys.readouterr().err


def test_streaming_input_and_body_limit(load):
    fn = load("runtime_vercel", "api/wsgi_raw.py", body_limit=8)
    status, _, body, _ = H.call(fn.app, H.http_scope("POST", "/echo"), [b"\x00\x01", b"\xff", b"abc"])
    assert (status, body) == (200, b"\x00\x01\xffabc")
    status, _, body, _ = H.call(fn.app, H.http_scope("POST", "/echo"), [b"12345", b"67890"])  # no length: caught while reading
    assert status == 413
    status, _, _, _ = H.call(fn.app, H.http_scope("POST", "/echo", headers=[("Content-Length", "9")]), [b"x" * 9])
    assert status == 413


def test_close_called_on_client_disconnect(raw):
    module = raw.module
    with H.LiveServer(raw.app, raw) as server, httpx.Client(base_url=server.url) as client:
        with client.stream("GET", "/endless") as r:
            for _ in r.iter_raw():
                break
        deadline = time.monotonic() + 5
        while "endless" not in module.CLOSED and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "endless" in module.CLOSED


def test_through_uvicorn(raw):
    png = Path("static/logo.png").read_bytes()
    with H.LiveServer(raw.app, raw) as server, httpx.Client(base_url=server.url) as client:
        r = client.get("/file")
        assert r.content == png and r.headers["content-type"] == "image/png"
        assert client.get("/cookies").headers.get_list("set-cookie") == ["a=1", "b=2"]
        for query in ("say%20hello=nice", "%E6%82%A8%E5%A5%BD=%2F"):
            assert client.get(httpx.URL(server.url + "/q?" + query)).json()["QUERY_STRING"] == query
        with client.stream("GET", "/stream") as r:
            arrivals = [(time.time(), chunk) for chunk in r.iter_raw()]
    assert len(arrivals) == 3
    assert arrivals[0][0] < float(arrivals[-1][1].split(b"|")[1])
    assert "stream" in raw.module.CLOSED


def test_flask_vercel_layout_sees_full_path(load):
    fn = load("runtime_vercel", "api/flaskapp.py")
    with H.LiveServer(fn.app, fn) as server, httpx.Client(base_url=server.url) as client:
        data = client.get("/api/flaskapp/users").json()
        assert data["path"] == "/api/flaskapp/users" and data["script_root"] == ""
        assert data["url"] == "/users"
        assert "site-packages" in data["flask_file"]  # the project's flask/ folder did not shadow Flask
        payload = {"name": "Zoë", "city": "東京"}
        r = client.post("/json", content=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                        headers={"content-type": "application/json; charset=utf-8"})
        assert r.json() == dict(payload, seen=True)


def test_flask_edgeone_mount(load):
    fn = load("runtime_edgeone", "cloud-functions/api/flaskapp.py", layout="edgeone")
    with H.LiveServer(H.Front(fn.app, root_path="/api/flaskapp"), fn) as server:
        data = httpx.get(server.url + "/api/flaskapp/users").json()
    assert data == {"path": "/users", "script_root": "/api/flaskapp", "url": "/api/flaskapp/users", "endpoint": "users"}


def test_django_edgeone_mount_append_slash(tmp_path):
    """Django's settings are process-global, so this runs in its own process."""
    root = H.project("runtime_edgeone", tmp_path)
    spec = H.spec(root, "cloud-functions/api/dj.py", layout="edgeone", attr="application")
    script = (
        "import json, sys, httpx\n"
        "sys.path.insert(0, %r)\n"
        "import runtime_harness as H\n"
        "from fnserve.runtime.loader import load_function\n"
        "fn = load_function(json.loads(sys.argv[1]))\n"
        "with H.LiveServer(H.Front(fn.app, root_path='/api/dj'), fn) as s:\n"
        "    r = httpx.get(s.url + '/api/dj/admin')\n"
        "    r2 = httpx.get(s.url + '/api/dj/admin/')\n"
        "print(json.dumps([fn.kind, r.status_code, r.headers.get('location'), r2.json()]))\n"
    ) % str(Path(__file__).parents[1])
    env = dict(os.environ)
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run([sys.executable, "-c", script, json.dumps(spec)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    kind, status, location, inner = json.loads(out.stdout.strip().splitlines()[-1])
    assert (kind, status, location) == ("wsgi", 301, "/api/dj/admin/")
    assert inner == {"path": "/api/dj/admin/", "path_info": "/admin/"}


def test_root_path_only_at_a_segment_boundary():
    from fnserve.runtime.wsgi import wsgi_path

    assert wsgi_path(H.http_scope(path="/apihealth", root_path="/api")) == ("", "/apihealth")
    assert wsgi_path(H.http_scope(path="/api/health", root_path="/api")) == ("/api", "/health")
    raw = H.http_scope(path="/x/\ufffd", raw_path=b"/x/%FF")  # a non-UTF-8 byte survives via raw_path
    assert wsgi_path(raw) == ("", "/x/\xff")


def test_head_drops_the_body_and_exc_info_after_headers_sent_aborts(load):
    fn = load("runtime_vercel", "api/wsgi_raw.py")
    status, headers, body, _ = H.call(fn.app, H.http_scope("HEAD", "/cookies"))
    assert (status, body) == (200, b"") and values(headers, b"content-length") == [b"2"]

    def late(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"partial"
        try:
            raise ValueError("after the headers")
        except ValueError:
            import sys as _sys

            start_response("500 Oops", [], _sys.exc_info())  # must re-raise: headers are out

    from fnserve.runtime.pool import make_pool
    from fnserve.runtime.wsgi import WSGIAdapter

    with pytest.raises(ValueError, match="after the headers"):
        H.call(WSGIAdapter(late, executor=make_pool(1, "t")), H.http_scope())


def test_back_pressure_bounds_what_the_app_runs_ahead():
    import asyncio

    from fnserve.runtime.pool import make_pool
    from fnserve.runtime.wsgi import WSGIAdapter

    sent, ahead = [], []

    def big(environ, start_response):
        start_response("200 OK", [])
        for i in range(24):
            ahead.append(i - len(sent))
            yield b"x" * (256 * 1024)

    async def main():
        async def receive():
            await asyncio.sleep(10)
            return {"type": "http.disconnect"}

        first = [{"type": "http.request", "body": b"", "more_body": False}]

        async def receive_first():
            return first.pop() if first else await receive()

        async def send(message):
            if message["type"] == "http.response.body":
                await asyncio.sleep(0.01)
                sent.append(len(message.get("body", b"")))

        await WSGIAdapter(big, executor=make_pool(1, "t"))(H.http_scope(), receive_first, send)

    asyncio.run(main())
    assert sum(sent) == 24 * 256 * 1024
    assert max(ahead) <= 8  # 1 MiB high-water mark = 4 chunks in flight, plus the ones being sent
