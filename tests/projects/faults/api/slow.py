"""/api/slow?sleep=S answers "slow ok" after S seconds (default 1; ASGI, so one instance holds many)."""

import asyncio
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope.get("query_string", b"").decode())
    await asyncio.sleep(float(query.get("sleep", ["1"])[0]))
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"slow ok"})
