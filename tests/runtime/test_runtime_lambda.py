"""The lambda adapter (API Gateway HTTP API v2 events, SPEC §4): in memory and through uvicorn."""

import base64
import contextlib
import json
from pathlib import Path

import httpx
import pytest
import runtime_harness as H

from fnserve.runtime.awslambda import build_event, map_response
from fnserve.runtime.loader import load_function


@pytest.fixture
def load(tmp_path, monkeypatch):
    with contextlib.ExitStack() as stack:
        def _load(rel, **kw):
            root = tmp_path / "runtime_vercel"
            if not root.exists():
                H.project("runtime_vercel", tmp_path)
            monkeypatch.chdir(root)
            stack.enter_context(H.isolated(root))
            return load_function(H.spec(root, rel, attr="handler", kind="lambda", **kw))

        yield _load


def test_event_shape():
    scope = H.http_scope("POST", "/api/users/42", query=b"a=1&a=2&say%20hello=nice",
                         headers=[("Cookie", "x=1; y=2"), ("X-Multi", "1"), ("X-Multi", "2"),
                                  ("User-Agent", "t/1"), ("Content-Type", "application/json")],
                         params={"id": "42"})
    event = build_event(scope, '{"k": "ü"}'.encode(), "req-1", 1_700_000_000.5)
    assert event["version"] == "2.0" and event["routeKey"] == "$default"
    assert event["rawPath"] == "/api/users/42" and event["rawQueryString"] == "a=1&a=2&say%20hello=nice"
    assert event["cookies"] == ["x=1", "y=2"] and "cookie" not in event["headers"]
    assert event["headers"]["x-multi"] == "1,2"
    assert event["queryStringParameters"] == {"a": "1,2", "say hello": "nice"}
    assert event["pathParameters"] == {"id": "42"}
    http = event["requestContext"]["http"]
    assert http == {"method": "POST", "path": "/api/users/42", "protocol": "HTTP/1.1",
                    "sourceIp": "127.0.0.1", "userAgent": "t/1"}
    assert event["requestContext"]["timeEpoch"] == 1_700_000_000_500
    assert event["requestContext"]["stage"] == "$default" and event["requestContext"]["requestId"] == "req-1"
    assert (event["body"], event["isBase64Encoded"]) == ('{"k": "ü"}', False)
    binary = build_event(H.http_scope("POST", "/x", headers=[("Content-Type", "image/png")]), b"\x89PNG\xff", "r", 0)
    assert binary["isBase64Encoded"] and base64.b64decode(binary["body"]) == b"\x89PNG\xff"


def test_map_response():
    status, headers, body = map_response({"statusCode": 302, "headers": {"Location": "/x"},
                                          "multiValueHeaders": {"X-A": ["1", "2"]}, "cookies": ["a=1", "b=2"]})
    assert status == 302 and body == b""
    assert headers == [(b"location", b"/x"), (b"x-a", b"1"), (b"x-a", b"2"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]
    assert map_response("hi") == (200, [(b"content-type", b"text/plain; charset=utf-8")], b"hi")
    assert map_response({"a": 1})[2] == b'{"a": 1}'
    with pytest.raises(TypeError):
        map_response(42)


def test_plain_handler_through_uvicorn(load):
    fn = load("api/lambda_plain.py")
    assert fn.kind == "lambda"
    png = Path("static/logo.png").read_bytes()
    with H.LiveServer(H.Front(fn.app, params={"id": "9"}), fn) as server, httpx.Client(base_url=server.url) as client:
        r = client.get(httpx.URL(server.url + "/api/lambda_plain?%E6%82%A8%E5%A5%BD=%2F"), headers={"cookie": "s=1"})
        assert r.status_code == 201
        assert r.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
        assert r.headers.get_list("x-multi") == ["1", "2"]
        data = r.json()
        assert data["event"]["rawQueryString"] == "%E6%82%A8%E5%A5%BD=%2F"
        assert data["event"]["pathParameters"] == {"id": "9"} and data["event"]["cookies"] == ["s=1"]
        assert 0 < data["remaining"] <= 300_000 and data["function_name"] == "api-lambda_plain"
        r = client.get("/api/lambda_plain/png")
        assert r.content == png and r.headers["content-type"] == "image/png"
        r = client.get("/api/lambda_plain/text")
        assert (r.status_code, r.text) == (200, "just text")


def test_mangum_fastapi_through_uvicorn(load):
    fn = load("api/mangum_fn.py")
    assert fn.kind == "lambda"
    with H.LiveServer(fn.app, fn) as server, httpx.Client(base_url=server.url) as client:
        payload = {"name": "Zoë", "city": "東京"}
        r = client.post(httpx.URL(server.url + "/api/mangum_fn/echo?say%20hello=nice"),
                        content=json.dumps(payload, ensure_ascii=False).encode("utf-8"),
                        headers={"content-type": "application/json", "cookie": "s=1; t=2"})
        data = r.json()
        assert data["path"] == "/api/mangum_fn/echo" and data["query"] == "say%20hello=nice"
        assert data["cookies"] == {"s": "1", "t": "2"} and json.loads(data["body"]) == payload
        cookies = client.get("/api/mangum_fn/cookies").headers.get_list("set-cookie")
        assert [c.split(";")[0] for c in cookies] == ["a=1", "b=2"]


def test_body_limit(load):
    fn = load("api/lambda_plain.py", body_limit=4)
    status, _, body, _ = H.call(fn.app, H.http_scope("POST", "/x"), [b"12", b"345"])
    assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
