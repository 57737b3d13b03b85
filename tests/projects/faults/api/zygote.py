"""Kills its parent process (the zygote it was forked from) with SIGKILL unless ?ok=1, then
answers with its parent's pid."""

import os
import signal
import time


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    parent = os.getppid()
    if b"ok=1" not in scope.get("query_string", b""):
        os.kill(parent, signal.SIGKILL)
        time.sleep(0.5)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"zygote ok %d" % parent})
