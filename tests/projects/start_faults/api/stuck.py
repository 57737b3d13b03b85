"""/api/stuck?sleep=S blocks the worker's event loop for S seconds (one long call)."""

import time
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope.get("query_string", b"").decode())
    time.sleep(float(query.get("sleep", ["0"])[0]))
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"stuck ok"})
