# Headers sent as a generator of pairs, as Sanic does: any iterable of pairs is valid ASGI.
async def app(scope, receive, send):
    if scope["type"] != "http":
        return

    def headers():
        yield (b"content-type", b"text/plain")
        yield (b"set-cookie", b"a=1; Path=/")
        yield (b"set-cookie", b"b=2; Path=/")

    await send({"type": "http.response.start", "status": 200, "headers": headers()})
    await send({"type": "http.response.body", "body": b"ok"})
