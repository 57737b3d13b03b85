"""Goes over its memory of 128 MB (vercel.json) unless ?ok=1: allocates 320 MB and holds it 2 s
(long enough for RSS polling, without a memory cgroup, to see it)."""

import time

MB = 1 << 20


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b"hog ok"
    if b"ok=1" not in scope.get("query_string", b""):
        hoard = [b"\1" * (64 * MB) for _ in range(5)]  # touched pages, not a lazy calloc
        time.sleep(2)
        body = b"hog survived %d MB" % (len(hoard) * 64)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
