"""POST /api/bodytime: reads the whole body, timing the read from its first receive() call, and
answers "read N" with x-read-ms (what the function waited for its body)."""

import time


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    t0 = time.monotonic()
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    read_ms = int((time.monotonic() - t0) * 1000)
    body = b"read %d" % size
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body)), (b"x-read-ms", b"%d" % read_ms)]})
    await send({"type": "http.response.body", "body": body})
