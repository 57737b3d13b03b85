"""An ASGI app whose lifespan startup fails while the file named by $FAULTS_FLAGS/down exists
(a database briefly unreachable during a cold start)."""

import os

FLAG = os.path.join(os.environ.get("FAULTS_FLAGS", "/nonexistent"), "down")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        if os.path.exists(FLAG):
            await send({"type": "lifespan.startup.failed", "message": "database unreachable"})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"flaky ok"})
