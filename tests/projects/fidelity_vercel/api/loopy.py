"""Runs an event loop, a thread and file I/O at import, as ``datasette publish vercel``'s
generated ``index.py`` does with ``asyncio.run(ds.invoke_startup())`` (SPEC §4)."""
import asyncio
import json
import threading
import time

STATE = {}


async def _startup():
    await asyncio.sleep(0.01)
    STATE["startup"] = "ran"
    return asyncio.get_running_loop()


_loop = asyncio.run(_startup())
STATE["import_loop_closed"] = _loop.is_closed()

_worker = threading.Thread(target=lambda: STATE.update(thread="ran"))
_worker.start()
_worker.join()
_ticker = threading.Thread(target=lambda: [time.sleep(0.05) for _ in iter(int, 1)], daemon=True)
_ticker.start()  # keeps running in the background

with open("data/seed.txt") as f:  # relative to the project root (the working directory)
    STATE["seed"] = f.read().strip()


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        await send({"type": "websocket.accept", "headers": ((b"x-ws", v) for v in (b"a", b"b"))})
        await send({"type": "websocket.send", "bytes": bytearray(b"\x00bytes")})
        await send({"type": "websocket.send", "bytes": memoryview(b"view")})
        await send({"type": "websocket.close", "code": 1000})
        return
    await receive()
    body = json.dumps({**STATE, "ticker_alive": _ticker.is_alive()}).encode()
    headers = ((name, value) for name, value in [(b"content-type", b"application/json"), (b"set-cookie", b"a=1"),
                                                 (b"set-cookie", b"b=2")])
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": bytearray(body)})
