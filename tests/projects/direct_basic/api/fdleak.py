"""/api/fdleak opens file descriptors until EMFILE and keeps them (then fails: 500); ?ok=1 needs one
descriptor (so it fails too on an instance that leaked, and succeeds on a fresh one)."""

import os

LEAKED = []


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if b"ok=1" not in scope.get("query_string", b""):
        while True:
            LEAKED.append(os.open(os.devnull, os.O_RDONLY))  # raises OSError(EMFILE) at the limit
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"9")]})
    await send({"type": "http.response.body", "body": b"fdleak ok"})
