"""Fuzz fixture (issue 10): a raw ASGI app under /api/a/** — HTTP: reads the whole body, answers
200 with ``x-fixture: 1``; WebSocket: ``?deny`` returns without accepting (the front answers
403), else accepts, echoes one message and closes. ``x-read-ms``: how long reading the body took
inside the function."""

import time


async def app(scope, receive, send):
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        if b"deny" in scope.get("query_string", b""):
            return
        await send({"type": "websocket.accept"})
        message = await receive()
        if message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message.get("text") or "", "bytes": message.get("bytes")})
            await send({"type": "websocket.close", "code": 1000})
        return
    size = 0
    more = True
    started = time.monotonic()
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return
        size += len(message.get("body", b""))
        more = message.get("more_body", False)
    body = b"read %d\n" % size
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"x-fixture", b"1"), (b"content-length", str(len(body)).encode()),
                            (b"x-read-ms", b"%d" % ((time.monotonic() - started) * 1000))]})
    await send({"type": "http.response.body", "body": body})
