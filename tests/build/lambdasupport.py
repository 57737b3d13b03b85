"""Helpers of the Lambda target tests: a project with one function of each kind, the three
event shapes Lambda delivers for HTTP (API Gateway REST v1, HTTP API v2 / Function URL, ALB),
and a decoder turning each shape's result back into (status, headers, body)."""

from __future__ import annotations

import base64
import json
from typing import Any

PNG = bytes(range(256)) + b"\x89PNG\r\n\x1a\n\x00\xff"

HANDLER_CLASS = '''
import hashlib, json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        url = urlsplit(self.path)
        body = json.dumps({"kind": "handler", "path": url.path, "query": parse_qs(url.query),
                           "cookie": self.headers.get("Cookie"), "multi": self.headers.get_all("X-Multi"),
                           "host": self.headers.get("Host")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", "a=1; Path=/")
        self.send_header("Set-Cookie", "b=2; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(201)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("X-Sha", hashlib.sha256(data).hexdigest())
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
'''

PARAM_CLASS = '''
import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"kind": "param", "query": parse_qs(urlsplit(self.path).query)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
'''

FLASK_APP = '''
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/api/flask_app/items/<x>", methods=["GET", "POST"])
def item(x):
    if request.method == "POST":
        return request.get_data(), 200, {"Content-Type": "application/octet-stream"}
    resp = jsonify(kind="wsgi", x=x, where=__import__("flask").__file__, args=request.args.to_dict(flat=False), script_name=request.script_root,
                   path=request.path, cookie=request.cookies.to_dict(), multi=request.headers.get("X-Multi"))
    resp.set_cookie("a", "1")
    resp.set_cookie("b", "2")
    return resp
'''

FASTAPI_APP = '''
import contextlib

from fastapi import FastAPI, Request, Response

started = []


@contextlib.asynccontextmanager
async def lifespan(app):
    started.append(1)
    yield {"boot": "ok"}


app = FastAPI(lifespan=lifespan)


@app.get("/api/fastapi_app/state")
async def state(request: Request, q: str = ""):
    return {"kind": "asgi", "startups": len(started), "boot": request.state.boot, "q": q,
            "where": __import__("fastapi").__file__,
            "path": request.url.path, "cookie": request.headers.get("cookie"),
            "multi": request.headers.getlist("x-multi")}


@app.get("/api/fastapi_app/bin")
async def binary():
    return Response(bytes(range(256)) + b"\\x89PNG\\r\\n\\x1a\\n\\x00\\xff", media_type="image/png")


@app.post("/api/fastapi_app/echo")
async def echo(request: Request):
    response = Response(await request.body(), media_type="application/octet-stream")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response
'''

LAMBDA_STYLE = '''
import base64, json


def handler(event, context):
    body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        body = base64.b64decode(body).decode("latin-1")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "multiValueHeaders": {"set-cookie": ["a=1", "b=2"]},
        "body": json.dumps({"kind": "lambda", "rawPath": event["rawPath"], "query": event.get("queryStringParameters"),
                            "cookies": event.get("cookies"), "method": event["requestContext"]["http"]["method"],
                            "body": body, "remaining": context.get_remaining_time_in_millis() > 0,
                            "greeting": __import__("os").environ.get("GREETING")}),
    }
'''

FILES = {
    "api/hello.py": HANDLER_CLASS,
    "api/users/[id].py": PARAM_CLASS,
    "api/flask_app.py": FLASK_APP,
    "api/fastapi_app.py": FASTAPI_APP,
    "api/event.py": LAMBDA_STYLE,
    "requirements.txt": "flask>=3.0,<4\nfastapi>=0.110,<1\n",
    ".env": "GREETING=from-dotenv\n",
}
SOURCES = ("v1", "v2", "alb", "alb-multi")


def event(source: str, method: str, path: str, query: list[tuple[str, str]] = (), headers: list[tuple[str, str]] = (),
          body: bytes | None = None, *, binary: bool = False) -> dict[str, Any]:
    """An HTTP event as Lambda delivers it. ``source``: ``v1`` (REST API), ``v2`` (HTTP API /
    Function URL), ``alb`` (single-value headers) or ``alb-multi`` (multi-value headers on).
    ``headers``: pairs, repeated names allowed (``Cookie`` goes to ``cookies`` for v2)."""
    encoded_body: str | None = None
    if body is not None:
        encoded_body = base64.b64encode(body).decode() if binary else body.decode()
    headers = [("Host", "example.com"), ("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "203.0.113.9"), *headers]
    multi_h: dict[str, list[str]] = {}
    for k, v in headers:
        multi_h.setdefault(k, []).append(v)
    multi_q: dict[str, list[str]] = {}
    for k, v in query:
        multi_q.setdefault(k, []).append(v)
    if source == "v2":
        from urllib.parse import urlencode

        cookies = [c.strip() for k, v in headers if k.lower() == "cookie" for c in v.split(";")]
        out: dict[str, Any] = {
            "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": urlencode(list(query)),
            "headers": {k.lower(): ",".join(v) for k, v in multi_h.items() if k.lower() != "cookie"},
            "requestContext": {"http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                                        "sourceIp": "203.0.113.9", "userAgent": "test"},
                               "requestId": "r1", "routeKey": "$default", "stage": "$default"},
            "isBase64Encoded": binary,
        }
        if cookies:
            out["cookies"] = cookies
        if query:
            out["queryStringParameters"] = {k: ",".join(v) for k, v in multi_q.items()}
        if encoded_body is not None:
            out["body"] = encoded_body
        return out
    if source == "v1":
        return {
            "resource": "/{proxy+}", "path": path, "httpMethod": method,
            "headers": {k: v[-1] for k, v in multi_h.items()}, "multiValueHeaders": multi_h,
            "queryStringParameters": {k: v[-1] for k, v in multi_q.items()} or None,
            "multiValueQueryStringParameters": multi_q or None,
            "pathParameters": None, "stageVariables": None,
            "requestContext": {"stage": "prod", "httpMethod": method, "path": "/prod" + path, "protocol": "HTTP/1.1",
                               "identity": {"sourceIp": "203.0.113.9"}, "requestId": "r1"},
            "body": encoded_body, "isBase64Encoded": binary,
        }
    from urllib.parse import quote

    out = {"requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:tg"}},
           "httpMethod": method, "path": path, "body": encoded_body or "", "isBase64Encoded": binary}
    if source == "alb-multi":
        out["multiValueHeaders"] = {k.lower(): v for k, v in multi_h.items()}
        out["multiValueQueryStringParameters"] = {quote(k): [quote(x) for x in v] for k, v in multi_q.items()}
    else:
        out["headers"] = {k.lower(): v[-1] for k, v in multi_h.items()}
        out["queryStringParameters"] = {quote(k): quote(v[-1]) for k, v in multi_q.items()}
    return out


def decode(source: str, result: dict[str, Any]) -> tuple[int, dict[str, list[str]], bytes]:
    """(status, lowercase header name → values, body bytes) of a Lambda result of ``source``,
    checking the shape each source requires on the way."""
    assert isinstance(result["statusCode"], int)
    assert isinstance(result["isBase64Encoded"], bool)
    headers: dict[str, list[str]] = {}
    if source == "v2":
        assert "multiValueHeaders" not in result
        for k, v in result["headers"].items():
            headers.setdefault(k.lower(), []).append(v)
        if result.get("cookies"):
            headers["set-cookie"] = list(result["cookies"])
    elif source == "v1":
        for k, v in result.get("headers", {}).items():
            headers.setdefault(k.lower(), []).append(v)
        for k, vs in result.get("multiValueHeaders", {}).items():
            headers.setdefault(k.lower(), []).extend(vs)
    else:
        assert result["statusDescription"].startswith(str(result["statusCode"]) + " ")
        if source == "alb-multi":
            assert "headers" not in result
            for k, vs in result["multiValueHeaders"].items():
                headers.setdefault(k.lower(), []).extend(vs)
        else:
            assert "multiValueHeaders" not in result
            for k, v in result["headers"].items():
                headers.setdefault(k.lower(), []).append(v)
    raw = result.get("body") or ""
    body = base64.b64decode(raw) if result["isBase64Encoded"] else raw.encode()
    return result["statusCode"], headers, body


def as_json(body: bytes) -> Any:
    return json.loads(body)


COOKIE = [("Cookie", "c1=v1; c2=v2")]
MULTI = [("X-Multi", "one"), ("X-Multi", "two")]


def _multi_seen(source: str) -> list[str]:
    """The X-Multi values a function sees: every value, except behind a single-value ALB (last)."""
    return ["two"] if source == "alb" else ["one", "two"] if source != "v2" else ["one,two"]


def check_handler(invoke: Any, source: str) -> None:
    """``api/hello.py``: a BaseHTTPRequestHandler class (query, cookies, repeated headers, two
    Set-Cookie, a binary POST body both ways, HEAD, 404 outside its route)."""
    status, headers, body = decode(source, invoke(event(source, "GET", "/api/hello", [("a", "1"), ("a", "2"), ("b", "x y")],
                                                        COOKIE + MULTI)))
    data = as_json(body)
    assert status == 200 and headers["content-type"] == ["application/json"]
    assert data["path"] == "/api/hello" and data["cookie"] == "c1=v1; c2=v2" and data["host"] == "example.com"
    assert data["query"] == ({"a": ["2"], "b": ["x y"]} if source == "alb" else {"a": ["1", "2"], "b": ["x y"]})
    assert data["multi"] == _multi_seen(source)
    assert sorted(headers["set-cookie"]) == ["a=1; Path=/", "b=2; Path=/"]
    status, headers, body = decode(source, invoke(event(source, "POST", "/api/hello", body=PNG, binary=True,
                                                        headers=[("Content-Type", "application/octet-stream")])))
    import hashlib

    assert status == 201 and body == PNG and headers["x-sha"] == [hashlib.sha256(PNG).hexdigest()]
    status, headers, body = decode(source, invoke(event(source, "HEAD", "/api/hello")))
    assert status == 200 and body == b""
    status, _, body = decode(source, invoke(event(source, "GET", "/api/other")))
    assert status == 404 and as_json(body)["error"]["code"] == "NOT_FOUND"


def check_param(invoke: Any, source: str) -> None:
    """``api/users/[id].py``: the route parameter merged into the query (Vercel layout)."""
    status, _, body = decode(source, invoke(event(source, "GET", "/api/users/42", [("y", "2")])))
    assert status == 200 and as_json(body) == {"kind": "param", "query": {"y": ["2"], "id": ["42"]}}
    status, _, _ = decode(source, invoke(event(source, "GET", "/api/users/42/more")))
    assert status == 404


def check_wsgi(invoke: Any, source: str) -> None:
    """``api/flask_app.py``: a Flask mount (sub-paths, args, cookies both ways, binary echo)."""
    status, headers, body = decode(source, invoke(event(source, "GET", "/api/flask_app/items/7", [("q", "1")],
                                                        COOKIE + MULTI)))
    data = as_json(body)
    assert status == 200
    assert data["x"] == "7" and data["args"] == {"q": ["1"]} and data["path"] == "/api/flask_app/items/7"
    assert data["script_name"] == "" and data["cookie"] == {"c1": "v1", "c2": "v2"}
    assert sorted(c.split(";")[0] for c in headers["set-cookie"]) == ["a=1", "b=2"]
    status, _, body = decode(source, invoke(event(source, "POST", "/api/flask_app/items/7", body=PNG, binary=True)))
    assert status == 200 and body == PNG


def check_asgi(invoke: Any, source: str) -> None:
    """``api/fastapi_app.py``: lifespan startup once per container, state, binary response, cookies."""
    for _ in range(2):
        status, _, body = decode(source, invoke(event(source, "GET", "/api/fastapi_app/state", [("q", "é x")], COOKIE)))
        data = as_json(body)
        assert status == 200 and data["startups"] == 1 and data["boot"] == "ok" and data["q"] == "é x"
        assert data["path"] == "/api/fastapi_app/state" and data["cookie"] == "c1=v1; c2=v2"
    status, headers, body = decode(source, invoke(event(source, "GET", "/api/fastapi_app/bin")))
    assert status == 200 and headers["content-type"] == ["image/png"] and body == PNG
    status, headers, body = decode(source, invoke(event(source, "POST", "/api/fastapi_app/echo", body=b"plain text",
                                                        headers=[("Content-Type", "text/plain")])))
    assert status == 200 and body == b"plain text"
    assert sorted(c.split(";")[0] for c in headers["set-cookie"]) == ["a=1", "b=2"]


def check_lambda_style(invoke: Any, source: str) -> None:
    """``api/event.py``: a handler(event, context) sees fnserve's v2 event whatever the source."""
    status, headers, body = decode(source, invoke(event(source, "POST", "/api/event", [("q", "1")], COOKIE,
                                                        body=b'{"n": 1}')))
    data = as_json(body)
    assert status == 200 and data["rawPath"] == "/api/event" and data["query"] == {"q": "1"}
    assert data["cookies"] == ["c1=v1", "c2=v2"] and data["method"] == "POST" and data["body"] == '{"n": 1}'
    assert data["remaining"] is True
    assert sorted(headers["set-cookie"]) == ["a=1", "b=2"]


CHECKS = {
    "api/hello.py": check_handler,
    "api/users/[id].py": check_param,
    "api/flask_app.py": check_wsgi,
    "api/fastapi_app.py": check_asgi,
    "api/event.py": check_lambda_style,
}
