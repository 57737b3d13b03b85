"""A framework-free ASGI app with a lifespan (stdlib only, so it also runs on Python 3.9)."""
COUNTS = {"startup": 0}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                COUNTS["startup"] += 1
                scope["state"]["greeting"] = "hi"
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = ("%s %s %d" % (scope["state"]["greeting"], scope["path"], COUNTS["startup"])).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
