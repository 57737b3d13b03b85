"""A raw ASGI app with lifespan: /api/asgi answers at once, /api/asgi?sleep=S after S seconds.
Prints "lifespan shutdown" at lifespan shutdown (the test looks for it in fnserve's log)."""

import asyncio
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                print("lifespan shutdown", flush=True)
                await send({"type": "lifespan.shutdown.complete"})
                return
    query = parse_qs(scope.get("query_string", b"").decode())
    delay = float(query.get("sleep", ["0"])[0])
    if delay:
        await asyncio.sleep(delay)
    body = b"asgi ok"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
