async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = bytearray(range(256))
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/octet-stream")]})
    await send({"type": "http.response.body", "body": memoryview(body), "more_body": True})
    await send({"type": "http.response.body", "body": bytearray(b"\xff\xfe")})
