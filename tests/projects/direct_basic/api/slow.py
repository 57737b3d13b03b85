"""/api/slow?sleep=S answers "slow ok" after S seconds (ASGI; maxDuration 1 in vercel.json)."""

import asyncio
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope.get("query_string", b"").decode())
    await asyncio.sleep(float(query.get("sleep", ["0"])[0]))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"7")]})
    await send({"type": "http.response.body", "body": b"slow ok"})
