"""A Vercel catch-all route (raw ASGI): echoes its whole scope as JSON, but ``client``/``server``
(ports differ between two servers) and a generated request id (shown as "<generated>"), plus the
body length. ``?stream=1``: the answer comes in two parts without a length (chunked); ``?big=N``: N bytes
in 64 KiB parts, then the echo."""

import json
import re
from urllib.parse import parse_qs


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return "<%s>" % type(value).__name__


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    seen = {k: _plain(v) for k, v in scope.items() if k not in ("client", "server", "headers")}
    seen["headers"] = [[k.decode("latin-1"),
                        "<generated>" if k == b"x-request-id" and re.fullmatch(rb"[0-9a-f]{16}", v)
                        else v.decode("latin-1")] for k, v in scope["headers"]]
    seen["body_length"] = size
    body = json.dumps(seen, sort_keys=True).encode()
    big = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("big")
    if big:  # a large answer in 64 KiB parts, no length
        size = int(big[0])
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        part = bytes(range(256)) * 256
        for start in range(0, size, len(part)):
            await send({"type": "http.response.body", "body": part[:size - start], "more_body": True})
        await send({"type": "http.response.body", "body": body})
        return
    if b"stream=1" in scope.get("query_string", b""):
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body[:10], "more_body": True})
        await send({"type": "http.response.body", "body": body[10:]})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
