"""A raw ASGI app: answers "asgi <path>?<query>" (after ?sleep=S seconds when given)."""

import asyncio
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = scope.get("query_string", b"").decode("latin-1")
    delay = float(parse_qs(query).get("sleep", ["0"])[0])
    if delay:
        await asyncio.sleep(delay)
    body = ("asgi %s?%s" % (scope["path"], query)).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
