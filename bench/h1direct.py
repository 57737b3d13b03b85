"""The worker's direct-path server (``runtime.direct.DirectServer``) against bench/ipc.py's
``H1_WORKER`` prototype: server CPU µs per request on keep-alive connections.

A server process (pinned to CPU 0, uvloop) serves ``--conns`` connections it accepted, with the
prototype's ``H1`` protocol (``proto``) or with ``DirectServer.adopt`` (``direct``, a plan routing
``/api/bench`` to the function; no front channel); one client process (CPU 1, uvloop) sends
``--requests`` requests per connection, one at a time per connection, after a warm-up. Both serve
bench/ipc.py's tiny raw ASGI app. Printed: the median over ``--rounds`` interleaved rounds of the
server's CPU µs per request (``time.process_time`` around the measured part), req/s, and the
ratio direct / proto measured in the same run.

    .venv/bin/python bench/h1direct.py [--conns 32] [--requests 2000] [--rounds 5]

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

async def main():
    if mode == "direct":
        from fnserve.runtime.direct import DirectServer
        server = DirectServer(ns["app"], None, lambda ftype, obj: None)
        server.set_plan(PLAN)
    for i in range(conns):
        sock, _ = await loop.sock_accept(lsn)
        if mode == "proto":
            await loop.connect_accepted_socket(lambda: ns["H1"](b""), sock)
        else:
            server.adopt(i, sock, b"")
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    t0 = time.process_time()
    await loop.run_in_executor(None, sys.stdin.readline)
    print(time.process_time() - t0, flush=True)

loop.run_until_complete(main())
'''

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
    proc = subprocess.Popen([sys.executable, "-c", SERVER, mode, str(listener.fileno()), str(conns), str(HERE), str(SRC)],
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
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"proto": [], "direct": []}
    for i in range(args.rounds):
        for mode in ("proto", "direct") if i % 2 == 0 else ("direct", "proto"):
            results[mode].append(one_round(mode, args.conns, args.requests))
    medians = {}
    for mode, values in results.items():
        medians[mode] = statistics.median(v[0] for v in values)
        print(f"{mode:7s} server CPU {medians[mode]:5.1f} µs/request, {statistics.median(v[1] for v in values):8.0f} req/s"
              f" (median of {args.rounds}, {args.conns} keep-alive connections)")
    print(f"direct / proto: {medians['direct'] / medians['proto']:.2f}")


if __name__ == "__main__":
    main()
