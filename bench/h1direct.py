"""The worker's direct-path server (``runtime.direct.DirectServer``) against bench/ipc.py's
``H1_WORKER`` prototype: server CPU µs per request on keep-alive connections.

A server process (pinned to CPU 0, uvloop) serves ``--conns`` connections it accepted, with the
prototype's ``H1`` protocol (``proto``) or with ``DirectServer.adopt`` (``direct``, a plan routing
``/api/bench`` to the function; no front channel); one client process (CPU 1, uvloop) sends
``--requests`` requests per connection, one at a time per connection, after a warm-up. Both serve
bench/ipc.py's tiny raw ASGI app. Printed: the median over ``--rounds`` interleaved rounds of the
server's CPU µs per request (``time.process_time`` around the measured part), req/s, and the
ratio direct / proto measured in the same run.

    .venv/bin/python bench/h1direct.py [--conns 32] [--requests 2000] [--rounds 5] [--modes proto,direct]

More ``--modes`` measure the WSGI kind on the direct path (issue 14: Flask's ratio to granian):
``wsgi`` (a trivial WSGI app through ``runtime.wsgi.WSGIAdapter`` and its thread pool, as a worker
serves it), ``wsgi-tpc`` (the same app in a design sketch where one thread per connection reads,
calls the app and writes with blocking sockets: no event loop in the request path), ``flask`` and
``flask-tpc`` (a one-route Flask app both ways; needs Flask in the venv), ``flask-call`` (the Flask
app called in a loop in the server process, no HTTP: its own cost per request).

Bounded: every round stops by itself (a few seconds each); the server processes are waited for.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"

SERVER = r'''
import asyncio, socket, sys, time
sys.path[:0] = [sys.argv[4], sys.argv[5]]
import ipc
mode, fd, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ns = {}
exec(ipc.APP, ns)
if mode == "proto":
    code = ipc.H1_WORKER.replace("sys.path.insert(0, sys.argv[3])\nfrom api.bench import app\n", "")
    exec(code[:code.rindex("main()")], ns)
try:
    import uvloop
    loop = uvloop.new_event_loop()
except ImportError:
    loop = asyncio.new_event_loop()
asyncio.set_event_loop(loop)
lsn = socket.socket(fileno=fd)
PLAN = {"function": "api/bench.py", "routes": [{"segments": [["literal", "api"], ["literal", "bench"]],
        "mount": False, "function": "api/bench.py", "root_path": "", "layout": "vercel"}], "max_duration": 10.0}

def trivial_wsgi(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "5")])
    return [b"hello"]

def flask_app():
    from flask import Flask
    app = Flask("bench")
    app.add_url_rule("/api/bench", "bench", lambda: "hello")
    return app

def tpc_serve(wsgi, sock):
    """Design sketch: a connection served by its own thread, blocking I/O, no event loop."""
    from fnserve.runtime.wsgi import build_environ
    sock.setblocking(True)
    buf = b""
    while True:
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
            end = buf.find(b"\r\n\r\n")
        head, buf = buf[:end], buf[end + 4:]
        lines = head.split(b"\r\n")
        method, target, _version = lines[0].split(b" ")
        headers = [(k.lower(), v.strip()) for k, v in (line.split(b":", 1) for line in lines[1:])]
        scope = {"type": "http", "method": method.decode(), "path": target.decode(), "raw_path": target,
                 "query_string": b"", "root_path": "", "headers": headers, "http_version": "1.1",
                 "scheme": "http", "server": ("127.0.0.1", 0), "client": ("127.0.0.1", 0)}
        out = []
        result = wsgi(build_environ(scope, None), lambda status, hs, exc_info=None: out.append((status, hs)))
        try:
            body = b"".join(result)
        finally:
            getattr(result, "close", lambda: None)()
        status, hs = out[0]
        sock.sendall(b"HTTP/1.1 %s\r\n%s\r\n%s" % (status.encode(), b"".join(
            b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in hs), body))

async def main():
    app = ns["app"]
    wsgi = flask_app() if mode.startswith("flask") else trivial_wsgi
    if mode in ("wsgi", "flask"):
        from fnserve.runtime.pool import make_pool
        from fnserve.runtime.wsgi import WSGIAdapter
        app = WSGIAdapter(wsgi, executor=make_pool(16, "bench"))
    if mode in ("direct", "wsgi", "flask"):
        from fnserve.runtime.direct import DirectServer
        server = DirectServer(app, None, lambda ftype, obj: None)
        server.set_plan(PLAN)
    for i in range(conns):
        sock, _ = await loop.sock_accept(lsn)
        if mode == "proto":
            await loop.connect_accepted_socket(lambda: ns["H1"](b""), sock)
        elif mode.endswith("-tpc"):
            import threading
            threading.Thread(target=tpc_serve, args=(wsgi, sock), daemon=True).start()
        elif mode != "flask-call":
            server.adopt(i, sock, b"")
    print("ready", flush=True)
    if mode == "flask-call":  # no HTTP: the app's own cost, as many calls as the clients make requests
        from fnserve.runtime.wsgi import build_environ
        scope = {"type": "http", "method": "GET", "path": "/api/bench", "raw_path": b"/api/bench",
                 "query_string": b"", "root_path": "", "headers": [(b"host", b"x")], "http_version": "1.1"}
        await loop.run_in_executor(None, sys.stdin.readline)
        t0 = time.process_time()
        for _ in range(int(sys.argv[6])):
            result = wsgi(build_environ(scope, None), lambda *a: None)
            b"".join(result)
            result.close()
        print(time.process_time() - t0, flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        return
    await loop.run_in_executor(None, sys.stdin.readline)
    t0 = time.process_time()
    await loop.run_in_executor(None, sys.stdin.readline)
    print(time.process_time() - t0, flush=True)

loop.run_until_complete(main())
'''

MODES = ("proto", "direct", "wsgi", "wsgi-tpc", "flask", "flask-tpc", "flask-call")
REQUEST = b"GET /api/bench HTTP/1.1\r\nhost: x\r\nuser-agent: bench\r\naccept: */*\r\n\r\n"


def _pin(pid: int, cpu: int) -> None:
    try:
        os.sched_setaffinity(pid, {cpu % (os.cpu_count() or 1)})
    except (AttributeError, OSError):
        pass


def one_round(mode: str, conns: int, requests: int) -> tuple[float, float]:
    """(server CPU µs per request, req/s) for one server process."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(128)
    port = listener.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", SERVER, mode, str(listener.fileno()), str(conns), str(HERE), str(SRC),
                             str(conns * requests)],
                            pass_fds=[listener.fileno()], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    listener.close()
    _pin(proc.pid, 0)
    _pin(0, 1)
    assert proc.stdin is not None and proc.stdout is not None

    async def run() -> tuple[float, float]:
        pairs = [await asyncio.open_connection("127.0.0.1", port) for _ in range(conns)]
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"

        async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
            for _ in range(n):
                writer.write(REQUEST)
                await reader.readuntil(b"\r\n\r\n")
                await reader.readexactly(5)

        if mode == "flask-call":  # the server process calls the app itself; no requests
            proc.stdin.write("go\n")
            proc.stdin.flush()
            t0 = time.perf_counter()
            cpu = float(proc.stdout.readline())
            wall = time.perf_counter() - t0
            proc.stdin.write("end\n")
            proc.stdin.flush()
            for _, writer in pairs:
                writer.close()
            return cpu / (conns * requests) * 1e6, conns * requests / wall
        await asyncio.gather(*(client(r, w, 200) for r, w in pairs))
        proc.stdin.write("go\n")
        proc.stdin.flush()
        t0 = time.perf_counter()
        await asyncio.gather(*(client(r, w, requests) for r, w in pairs))
        wall = time.perf_counter() - t0
        proc.stdin.write("end\n")
        proc.stdin.flush()
        cpu = float(proc.stdout.readline())
        for _, writer in pairs:
            writer.close()
        return cpu / (conns * requests) * 1e6, conns * requests / wall

    loop: asyncio.AbstractEventLoop
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(run())
    finally:
        loop.close()
        proc.stdin.close()
        proc.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conns", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2000, help="per connection")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--modes", default="proto,direct", help="comma-separated: " + ", ".join(MODES))
    args = parser.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        parser.error("unknown mode(s) %s; choose from %s" % (", ".join(sorted(unknown)), ", ".join(MODES)))
    results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
    for i in range(args.rounds):
        for mode in modes if i % 2 == 0 else modes[::-1]:
            results[mode].append(one_round(mode, args.conns, args.requests))
    medians = {}
    for mode, values in results.items():
        medians[mode] = statistics.median(v[0] for v in values)
        print(f"{mode:10s} server CPU {medians[mode]:5.1f} µs/request, {statistics.median(v[1] for v in values):8.0f} req/s"
              f" (median of {args.rounds}, {args.conns} keep-alive connections)")
    first = modes[0]
    for mode in modes[1:]:
        print(f"{mode} / {first}: {medians[mode] / medians[first]:.2f}")


if __name__ == "__main__":
    main()
