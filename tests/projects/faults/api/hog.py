"""Goes over its memory of 128 MB (vercel.json) unless ?ok=1: allocates 1 GB itself (and holds it
2 s), or with ?children=N forks N children that each allocate 100 MB and hold it 2 s while it
waits for them (answering their exit statuses)."""

import os
import time
from urllib.parse import parse_qs

MB = 1 << 20


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = parse_qs(scope.get("query_string", b"").decode())
    body = b"hog ok"
    if "ok" not in query:
        children = int(query.get("children", ["0"])[0])
        if not children:
            hoard = [b"\1" * (64 * MB) for _ in range(16)]  # touched pages, not a lazy calloc
            time.sleep(2)  # held long enough for RSS polling (no cgroup) to see it
            body = b"hog survived %d MB" % (len(hoard) * 64)
        else:
            pids = []
            for _ in range(children):
                pid = os.fork()
                if pid == 0:
                    try:
                        block = b"\1" * (100 * MB)
                        time.sleep(2 + 0 * len(block))
                    finally:
                        os._exit(0)
                pids.append(pid)
            statuses = [os.waitpid(pid, 0)[1] for pid in pids]
            body = b"hog children exited %r" % (statuses,)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
