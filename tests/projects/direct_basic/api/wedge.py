"""/api/wedge?block=S blocks its event loop for S seconds (time.sleep in an async app: the instance
cannot answer anything meanwhile, not even its own 504); without it answers "wedge ok". maxDuration 1
in vercel.json."""

import time
from urllib.parse import parse_qs


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    block = float(parse_qs(scope.get("query_string", b"").decode()).get("block", ["0"])[0])
    if block:
        time.sleep(block)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"8")]})
    await send({"type": "http.response.body", "body": b"wedge ok"})
