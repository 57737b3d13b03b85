# (An instance with an async __call__: EdgeOne's build lists it as a function, see COMPATIBILITY.md.)
class BytesLike:
    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        body = bytearray(range(256))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        await send({"type": "http.response.body", "body": memoryview(body), "more_body": True})
        await send({"type": "http.response.body", "body": bytearray(b"\xff\xfe")})


app = BytesLike()
