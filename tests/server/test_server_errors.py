"""Error rendering (SPEC §3.5) and access-log formatting, in memory."""

from __future__ import annotations

import asyncio
import json
import logging

from fnserve.server import errorpages
from fnserve.server.logs import JsonFormatter, TextFormatter


def test_json_body_and_headers() -> None:
    headers, body = errorpages.render(502, "the worker died", detail="exit 3")
    assert json.loads(body) == {"error": {"code": "NO_RESPONSE_FROM_FUNCTION", "message": "the worker died", "detail": "exit 3"}}
    assert (b"content-type", b"application/json") in headers
    assert (b"content-length", str(len(body)).encode()) in headers


def test_html_page_escapes() -> None:
    _, body = errorpages.render(500, "api/x.py failed to load: <bad>", detail="Traceback <script>", as_html=True)
    text = body.decode()
    assert text.startswith("<!doctype html>") and "&lt;script&gt;" in text and "<script>" not in text
    assert "FUNCTION_INVOCATION_FAILED" in text


def test_send_error_variants() -> None:
    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    browser = {"type": "http", "method": "GET", "headers": [(b"accept", b"text/html")]}
    asyncio.run(errorpages.send_error(browser, send, 404, "no route", dev=True))
    assert sent[0]["status"] == 404 and sent[1]["body"].startswith(b"<!doctype html>")
    sent.clear()
    asyncio.run(errorpages.send_error(browser, send, 500, "boom", detail="secret traceback", dev=False))
    assert json.loads(sent[1]["body"]) == {"error": {"code": "FUNCTION_INVOCATION_FAILED", "message": "boom"}}
    sent.clear()
    asyncio.run(errorpages.send_error({"type": "http", "method": "HEAD", "headers": []}, send, 405, "no", headers=[(b"allow", b"GET")]))
    assert sent[1]["body"] == b"" and (b"allow", b"GET") in sent[0]["headers"]
    sent.clear()
    asyncio.run(errorpages.send_error({"type": "websocket", "headers": []}, send, 502, "gone"))
    assert sent == [{"type": "websocket.close", "code": 1011}]


def test_access_and_function_formatters() -> None:
    record = logging.LogRecord("fnserve.access", logging.INFO, __file__, 1, "x", (), None)
    record.__dict__.update(method="GET", path="/api/x?a=1", status=503, duration_ms=1.25, function="api/x.py")
    line = TextFormatter(dev=True, colour=False).format(record)
    assert line.endswith("GET /api/x?a=1 503 1.2ms api/x.py") or line.endswith("GET /api/x?a=1 503 1.3ms api/x.py")
    assert "\x1b[31m503" in TextFormatter(dev=True, colour=True).format(record)
    rec = logging.LogRecord("fnserve.function.api/x", logging.INFO, __file__, 1, "one\ntwo", (), None)
    rec.function = "api/x.py"
    out = TextFormatter(dev=True, route_of=lambda fid: "/api/x" if fid == "api/x.py" else None).format(rec)
    assert out == "[/api/x] one\n[/api/x] two"


def test_json_access_lines() -> None:
    record = logging.LogRecord("fnserve.access", logging.INFO, __file__, 1, "x", (), None)
    record.__dict__.update(method="POST", path="/api/x", status=201, duration_ms=0.4567, function="api/x.py")
    out = json.loads(JsonFormatter().format(record))
    assert out["method"] == "POST" and out["status"] == 201 and out["duration_ms"] == 0.457
    assert out["function"] == "api/x.py" and out["time"].endswith("Z")
