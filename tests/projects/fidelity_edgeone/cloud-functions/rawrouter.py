"""A minimal ASGI app that routes on ``raw_path`` (as Sanic does) and sends its headers as a
generator and its body as bytearray / memoryview chunks (SPEC §3.4, §4)."""
import json

ROUTES = {b"/": "index", b"/users/7": "user 7", b"/a%20b": "encoded"}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    route = ROUTES.get(scope["raw_path"])
    body = json.dumps({
        "route": route, "path": scope["path"], "raw_path": scope["raw_path"].decode("latin-1"),
        "root_path": scope["root_path"],
    }).encode()
    pairs = [(b"content-type", b"application/json"), (b"x-generated", b"1"), (b"x-generated", b"2")]
    await send({"type": "http.response.start", "status": 200 if route else 404, "headers": (p for p in pairs)})
    half = len(body) // 2
    await send({"type": "http.response.body", "body": bytearray(body[:half]), "more_body": True})
    await send({"type": "http.response.body", "body": memoryview(body)[half:]})
