"""The handler adapter (SPEC §3.4, §3.5, §4): in memory and through uvicorn with httpx."""

import json
import time
from pathlib import Path

import httpx
import pytest
import runtime_harness as H


@pytest.fixture
def hello(load):
    fn = load("runtime_vercel", "api/hello.py", attr="handler", kind="handler")
    assert fn.kind == "handler"
    return fn


def header_values(headers, name):
    return [v for k, v in headers if k == name]


def test_path_is_the_raw_target_byte_exact(hello):
    scope = H.http_scope(path="/api/hello/echo", raw_path=b"/api/hello/echo", query=b"say%20hello=nice&%E6%82%A8%E5%A5%BD=%2F",
                         headers=[("X-Multi", "1"), ("X-Multi", "2")])
    status, headers, body, _ = H.call(hello.app, scope)
    info = json.loads(body)
    assert status == 200
    assert info["path"] == "/api/hello/echo?say%20hello=nice&%E6%82%A8%E5%A5%BD=%2F"
    assert info["command"] == "GET" and info["version"] == "HTTP/1.1"
    assert info["requestline"] == "GET " + info["path"] + " HTTP/1.1"
    assert info["client"] == ["127.0.0.1", 50000] and info["host"] == "testserver"
    assert info["x_multi"] == ["1", "2"]


def test_two_set_cookie_and_no_content_type_added(hello):
    _, headers, _, _ = H.call(hello.app, H.http_scope(path="/api/hello/cookies"))
    assert header_values(headers, b"set-cookie") == [b"a=1; Path=/", b"b=2; Path=/"]
    status, headers, body, _ = H.call(hello.app, H.http_scope(path="/api/hello/nocontenttype"))
    assert status == 200 and body == b"plain bytes"
    assert not header_values(headers, b"content-type")


def test_methods_head_options_405(hello):
    status, headers, body, _ = H.call(hello.app, H.http_scope("HEAD", "/api/hello/cookies"))
    assert status == 200 and body == b"" and header_values(headers, b"content-length") == [b"2"]
    status, headers, body, _ = H.call(hello.app, H.http_scope("OPTIONS", "/api/hello"))
    assert status == 204 and header_values(headers, b"allow") == [b"GET, POST, HEAD, OPTIONS"]
    status, headers, body, _ = H.call(hello.app, H.http_scope("DELETE", "/api/hello"))
    assert status == 405 and header_values(headers, b"allow") == [b"GET, POST, HEAD, OPTIONS"]
    assert json.loads(body)["error"]["code"] == "method_not_allowed"


def test_send_error_raw_status_line_and_own_chunking(hello):
    status, headers, body, _ = H.call(hello.app, H.http_scope(path="/api/hello/error"))
    assert status == 404 and b"nothing here" in body
    assert not header_values(headers, b"connection")  # hop-by-hop headers are the server's business
    status, headers, body, _ = H.call(hello.app, H.http_scope(path="/api/hello/raw"))
    assert (status, body) == (201, b"raw") and header_values(headers, b"x-raw") == [b"yes"]
    status, headers, body, _ = H.call(hello.app, H.http_scope(path="/api/hello/chunked"))
    assert (status, body) == (200, b"hello world") and not header_values(headers, b"transfer-encoding")


def test_exception_is_a_500_with_json(hello, capsys):
    status, _, body, _ = H.call(hello.app, H.http_scope(path="/api/hello/boom"))
    assert status == 500 and json.loads(body)["error"]["code"] == "function_error"
    assert "kaboom" in capsys.readouterr().err


def test_post_body_streamed_in_chunks_and_limit(load):
    fn = load("runtime_vercel", "api/hello.py", attr="handler", kind="handler", body_limit=10)
    scope = H.http_scope("POST", "/api/hello/bin", headers=[("Content-Length", "8")])
    status, _, body, _ = H.call(fn.app, scope, [b"\x00\xff", b"\x01\x02\x03", b"abc"])
    assert (status, body) == (200, b"\x00\xff\x01\x02\x03abc")
    status, _, body, _ = H.call(fn.app, H.http_scope("POST", "/api/hello/bin", headers=[("Content-Length", "11")]), [b"x" * 11])
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"


def test_log_message_goes_to_the_function_log(hello, capsys):
    H.call(hello.app, H.http_scope(path="/api/hello/echo"))
    err = capsys.readouterr().err  # stderr: the worker captures it per function
    assert "127.0.0.1 - - [" in err and '"GET /api/hello/echo HTTP/1.1" 200' in err


def test_slow_requests_run_concurrently(hello):
    import asyncio

    async def many():
        start = time.monotonic()
        await asyncio.gather(*(H.acall(hello.app, H.http_scope(path="/api/hello/slow")) for _ in range(4)))
        return time.monotonic() - start

    assert asyncio.run(many()) < 1.5  # 4 x 0.5 s in parallel, not 2 s


def test_through_uvicorn(hello):
    png = Path("static/logo.png").read_bytes()  # CWD is the copied project root
    with H.LiveServer(hello.app, hello) as server, httpx.Client(base_url=server.url) as client:
        r = client.get("/api/hello/png")
        assert r.status_code == 200 and r.content == png and r.headers["content-type"] == "image/png"
        r = client.get("/api/hello/cookies")
        assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
        r = client.get("/api/hello/nocontenttype")
        assert "content-type" not in r.headers and r.content == b"plain bytes"
        payload = {"name": "Zoë", "city": "東京", "emoji": "🚀"}
        r = client.post("/api/hello/json", content=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                        headers={"content-type": "application/json; charset=utf-8"})
        assert r.json() == dict(payload, seen=True)
        for query in ("say%20hello=nice", "%E6%82%A8%E5%A5%BD=%2F"):
            r = client.get(httpx.URL(server.url + "/api/hello/echo?" + query))
            assert r.json()["path"] == "/api/hello/echo?" + query
        r = client.head("/api/hello/cookies")
        assert r.status_code == 200 and r.content == b""


def test_stream_arrives_in_three_chunks(hello):
    with H.LiveServer(hello.app, hello) as server, httpx.Client(base_url=server.url) as client:
        with client.stream("GET", "/api/hello/stream") as r:
            arrivals = [(time.time(), chunk) for chunk in r.iter_raw()]
    assert len(arrivals) == 3
    produced_last = float(arrivals[-1][1].split(b"|")[1])
    assert arrivals[0][0] < produced_last  # the first chunk arrived before the last was produced


def test_streaming_handler_sees_a_broken_pipe_when_the_client_leaves(hello):
    with H.LiveServer(hello.app, hello) as server, httpx.Client(base_url=server.url) as client:
        with client.stream("GET", "/api/hello/endless") as r:
            for _ in r.iter_raw():
                break
        deadline = time.monotonic() + 5
        while not hello.module.STOPPED and time.monotonic() < deadline:
            time.sleep(0.05)
    assert hello.module.STOPPED == ["endless"]


def test_rfile_readline_and_chunked_request_body(hello):
    class LineHandler(hello.entry):
        def do_POST(self):
            lines = [self.rfile.readline() for _ in range(3)]
            body = repr(lines).encode()
            self._send(200, body, "text/plain")

    from fnserve.runtime.handler import HandlerAdapter
    from fnserve.runtime.pool import make_pool

    adapter = HandlerAdapter(LineHandler, executor=make_pool(2, "t"))
    status, _, body, _ = H.call(adapter, H.http_scope("POST", "/x"), [b"one\ntw", b"o\nthr", b"ee"])
    assert (status, body) == (200, repr([b"one\n", b"two\n", b"three"]).encode())


def test_websocket_to_a_handler_is_refused(hello):
    import asyncio

    sent = []

    async def main():
        async def receive():
            return {"type": "websocket.connect"}

        async def send(message):
            sent.append(message)

        await hello.app({"type": "websocket", "path": "/api/hello", "headers": []}, receive, send)

    asyncio.run(main())
    assert sent == [{"type": "websocket.close", "code": 1008}]
