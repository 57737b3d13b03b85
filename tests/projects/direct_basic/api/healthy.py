"""Answers "healthy <pid>" at once (ASGI; the HealthyLoad of tests/server/test_fault_injection.py)."""

import os


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"healthy %d" % os.getpid()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
