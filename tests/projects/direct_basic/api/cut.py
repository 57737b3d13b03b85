"""/api/cut starts a 100-byte answer, sends 10 bytes of it, then kills its process (os._exit):
the client's answer is cut. ?ok=1: the whole answer."""

import asyncio
import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"100")]})
    if b"ok=1" in scope.get("query_string", b""):
        await send({"type": "http.response.body", "body": b"x" * 100})
        return
    await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
    await asyncio.sleep(0.3)
    os._exit(1)
