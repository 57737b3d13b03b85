"""A WSGI function for fnserve dev's limits: ?sleep=s sleeps, ?alloc=MB allocates (64 MB steps)."""

import os
import time
from urllib.parse import parse_qs


def app(environ, start_response):
    query = parse_qs(environ.get("QUERY_STRING", ""))
    if "sleep" in query:
        time.sleep(float(query["sleep"][0]))
    blocks = []
    for _ in range(int(query.get("alloc", ["0"])[0]) // 64):
        blocks.append(b"x" * (64 << 20))
        time.sleep(0.02)
    start_response("200 OK", [("content-type", "text/plain"), ("x-pid", str(os.getpid()))])
    return [str(os.getpid()).encode()]
