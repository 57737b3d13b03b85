"""Segfaults (reads address 0 with ctypes) unless ?ok=1."""

import ctypes


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if b"ok=1" not in scope.get("query_string", b""):
        ctypes.string_at(0)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"segv ok"})
