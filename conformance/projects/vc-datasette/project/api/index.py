# Shaped like the index.py that `datasette publish vercel` generates: the module runs an event
# loop at import (asyncio.run) to prepare its state, and starts a thread, before exporting `app`.
import asyncio
import json
import threading


async def prepare():
    await asyncio.sleep(0.01)
    return {"tables": ["facts", "places"]}


state = asyncio.run(prepare())

warmed = threading.Event()
threading.Thread(target=warmed.set, daemon=True).start()
warmed.wait(5)


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = json.dumps({
        "path": scope["path"],
        "query": scope["query_string"].decode(),
        "tables": state["tables"],
        "warmed": warmed.is_set(),
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
