"""A raw ASGI app at /api/scope (EdgeOne): echoes its scope as JSON, but ``client``/``server`` and
a generated request id (shown as "<generated>")."""

import json
import re


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    seen = {}
    for key, value in scope.items():
        if key in ("client", "server", "headers", "state"):
            continue
        seen[key] = value.decode("latin-1") if isinstance(value, bytes) else value
    seen["headers"] = [[k.decode("latin-1"),
                        "<generated>" if k == b"x-request-id" and re.fullmatch(rb"[0-9a-f]{16}", v)
                        else v.decode("latin-1")] for k, v in scope["headers"]]
    body = json.dumps(seen, sort_keys=True, default=repr).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
