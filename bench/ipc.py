"""Front → worker hop: fnserve's framed ASGI protocol vs HTTP/1.1 proxied over a Unix socket.

Both modes serve the same tiny ASGI app in a separate worker process over a Unix socket, with
``--inflight`` requests in flight (default 16), and the front converting an ASGI request to the
wire and the answer back to ASGI messages (what the real front server does):

(a) frames: ``Supervisor.acquire`` + ``upstream.forward`` → ``runtime.worker`` (one socket, multiplexed).
(b) a keep-alive HTTP/1.1 connection per in-flight request (httptools parser on the front) to
    (b2) an asyncio + pure-Python HTTP/1.1 server: what a worker can run with the stdlib only
         (the function's env has neither httptools nor uvicorn), or
    (b1) uvicorn + httptools (``--uds``): an upper bound that a worker could NOT use.

Prints round trips/s, p50/p99 latency (ms) and CPU µs per request on the front and in the worker.
Bounded: ``--requests`` per mode (default 20000) after 1000 warm-up requests.

    .venv/bin/python bench/ipc.py [--requests N] [--inflight 16] [--repeat 3] [--pin] [--no-uvloop]

``--pin`` puts the front on CPU 0 and the worker on CPU 1: steadier figures on a shared machine
(unpinned, the scheduler's same-CPU ping-pong favours one mode or another from run to run).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

APP = '''
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")]})
    await send({"type": "http.response.body", "body": b"hello"})
'''

# (b2): what a worker could run with the stdlib only: asyncio + a pure-Python HTTP/1.1 parser.
STDLIB_H1_SERVER = r'''
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from api.bench import app
REASONS = {200: b"OK"}

class H1(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buf = transport, b""

    def data_received(self, data):
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head, rest = self.buf[:end], self.buf[end + 4:]
            lines = head.split(b"\r\n")
            method, target, _ = lines[0].split(b" ", 2)
            headers = []
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                name, value = name.strip().lower(), value.strip()
                headers.append((name, value))
                if name == b"content-length":
                    length = int(value)
            if len(rest) < length:
                return
            body, self.buf = rest[:length], rest[length:]
            path, _, query = target.partition(b"?")
            scope = {"type": "http", "method": method.decode(), "path": path.decode("latin-1"),
                     "raw_path": path, "query_string": query, "headers": headers, "http_version": "1.1",
                     "scheme": "http", "root_path": "", "asgi": {"version": "3.0"}}
            asyncio.get_running_loop().create_task(self.run(scope, body))

    async def run(self, scope, body):
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}
        out = []
        async def send(message):
            if message["type"] == "http.response.start":
                out.append(b"HTTP/1.1 %d %s\r\n" % (message["status"], REASONS.get(message["status"], b"X")))
                out.extend(b"%s: %s\r\n" % (k, v) for k, v in message["headers"])
                out.append(b"\r\n")
            else:
                out.append(message.get("body", b""))
                if not message.get("more_body"):
                    self.transport.write(b"".join(out))
        await app(scope, receive, send)

def main():
    try:
        import uvloop
        loop = uvloop.new_event_loop() if sys.argv[3] == "1" else asyncio.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    server = loop.run_until_complete(loop.create_unix_server(H1, sys.argv[1]))
    loop.run_forever()

main()
'''

SCOPE = {
    "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
    "path": "/api/bench", "raw_path": b"/api/bench", "root_path": "", "query_string": b"",
    "headers": [(b"host", b"localhost"), (b"user-agent", b"bench"), (b"accept", b"*/*")],
    "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 3000),
}


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of ``pid`` (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def drive(one, total: int, inflight: int) -> list[float]:
    """Run ``one()`` ``total`` times with ``inflight`` concurrent callers; per-call latencies (s)."""
    latencies: list[float] = []
    remaining = [total]

    async def caller():
        while remaining[0] > 0:
            remaining[0] -= 1
            t = time.perf_counter()
            await one()
            latencies.append(time.perf_counter() - t)

    await asyncio.gather(*(caller() for _ in range(inflight)))
    return latencies


PIN = {"on": False}  # --pin: front on CPU 0, worker on CPU 1 (set once by main)


async def measure(name: str, one, worker_pid: int, total: int, inflight: int) -> dict:
    if PIN["on"]:
        os.sched_setaffinity(0, {0})
        os.sched_setaffinity(worker_pid, {1})
    await drive(one, 1000, inflight)
    cpu_front, cpu_worker = time.process_time(), cpu_of(worker_pid)
    t0 = time.perf_counter()
    lat = await drive(one, total, inflight)
    wall = time.perf_counter() - t0
    cpu_front, cpu_worker = time.process_time() - cpu_front, cpu_of(worker_pid) - cpu_worker
    lat.sort()
    return {
        "mode": name, "rps": total / wall, "p50_ms": statistics.median(lat) * 1000,
        "p99_ms": lat[int(len(lat) * 0.99)] * 1000,
        "front_us": cpu_front / total * 1e6, "worker_us": cpu_worker / total * 1e6,
    }


async def bench_frames(root: Path, total: int, inflight: int, use_uvloop: bool) -> dict:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from fnserve.project.types import Entry, EntryKind, Function, Layout
    from fnserve.server.upstream import forward
    from fnserve.supervisor import Supervisor, WorkerTarget

    fn = Function("api/bench.py", root / "api/bench.py", "api.bench", Layout.VERCEL,
                  Entry(EntryKind.APP, "app", 1), (root,))
    async with Supervisor([WorkerTarget.from_function(fn, root)], use_uvloop=use_uvloop) as sup:
        request = {"type": "http.request", "body": b"", "more_body": False}

        async def one():
            conn = await sup.acquire("api/bench.py")
            sent = []

            async def receive():
                if not sent:
                    sent.append(1)
                    return request
                await asyncio.sleep(3600)

            async def send(message):
                pass

            await forward(conn, dict(SCOPE), receive, send)

        await sup.acquire("api/bench.py")
        pid = sup.status()["api/bench.py"]["instances"][0]["pid"]
        return await measure("(a) frames, 1 socket", one, pid, total, inflight)


async def bench_http1_uvicorn(root: Path, total: int, inflight: int, use_uvloop: bool) -> dict:
    sock = str(root / "h1u.sock")
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "api.bench:app", "--uds", sock, "--http", "httptools",
         "--loop", "uvloop" if use_uvloop else "asyncio", "--no-access-log", "--log-level", "warning",
         "--lifespan", "off"],
        cwd=root,
    )
    return await _bench_http1("(b1) HTTP/1.1 → uvicorn", proc, sock, total, inflight)


async def bench_http1_stdlib(root: Path, total: int, inflight: int, use_uvloop: bool) -> dict:
    sock = str(root / "h1s.sock")
    script = root / "h1server.py"
    script.write_text(STDLIB_H1_SERVER)
    proc = subprocess.Popen([sys.executable, "-I", str(script), sock, str(root), "1" if use_uvloop else "0"], cwd=root)
    return await _bench_http1("(b2) HTTP/1.1 → stdlib", proc, sock, total, inflight)


async def _bench_http1(name: str, proc: subprocess.Popen, sock: str, total: int, inflight: int) -> dict:
    import httptools

    try:
        pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        for _ in range(1000):  # until uvicorn listens (bounded: 10 s)
            try:
                pool.append(await asyncio.open_unix_connection(sock))
                break
            except OSError:
                await asyncio.sleep(0.01)
        for _ in range(inflight - 1):
            pool.append(await asyncio.open_unix_connection(sock))

        class Parser:
            def __init__(self):
                self.done = False
                self.status = 0
                self.headers = []
                self.body = []

            def on_header(self, name, value):
                self.headers.append((name.lower(), value))

            def on_body(self, body):
                self.body.append(body)

            def on_message_complete(self):
                self.done = True

        request = {"type": "http.request", "body": b"", "more_body": False}

        async def receive():
            return request

        async def send(message):
            pass

        async def one():
            # the same ASGI-side work as forward(): receive() once, send() twice
            await receive()
            reader, writer = pool.pop()
            scope = SCOPE
            head = [b"%s %s HTTP/1.1\r\n" % (scope["method"].encode(), scope["raw_path"])]
            head += [b"%s: %s\r\n" % (k, v) for k, v in scope["headers"]]
            head.append(b"\r\n")
            writer.write(b"".join(head))
            p = Parser()
            parser = httptools.HttpResponseParser(p)
            while not p.done:
                parser.feed_data(await reader.read(65536))
            pool.append((reader, writer))
            await send({"type": "http.response.start", "status": parser.get_status_code(), "headers": p.headers})
            await send({"type": "http.response.body", "body": b"".join(p.body)})

        result = await measure(name, one, proc.pid, total, inflight)
        for _, writer in pool:
            writer.close()
        return result
    finally:
        proc.terminate()
        proc.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=20000)
    ap.add_argument("--inflight", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3, help="rounds; each mode's median round is shown")
    ap.add_argument("--no-uvloop", action="store_true")
    ap.add_argument("--pin", action="store_true", help="pin the front to CPU 0 and the worker to CPU 1")
    args = ap.parse_args()
    PIN["on"] = args.pin and len(os.sched_getaffinity(0)) >= 2
    use_uvloop = not args.no_uvloop
    if use_uvloop:
        import uvloop

        loop_factory = uvloop.new_event_loop
    else:
        loop_factory = asyncio.new_event_loop
    benches = (bench_frames, bench_http1_stdlib, bench_http1_uvicorn)
    runs: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="fnserve-bench-") as tmp:
        root = Path(tmp)
        (root / "api").mkdir()
        (root / "api" / "bench.py").write_text(APP)
        for _ in range(args.repeat):  # alternate the modes so machine noise hits all of them
            for bench in benches:
                loop = loop_factory()
                try:
                    row = loop.run_until_complete(bench(root, args.requests, args.inflight, use_uvloop))
                finally:
                    loop.close()
                runs.setdefault(row["mode"], []).append(row)
    print(f"front→worker over a Unix socket, {args.requests} requests x {args.repeat} rounds, "
          f"{args.inflight} in flight, uvloop={'on' if use_uvloop else 'off'}, "
          f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs (median round per mode)")
    print(f"{'mode':<26}{'round trips/s':>14}{'p50 ms':>9}{'p99 ms':>9}{'front µs':>10}{'worker µs':>11}")
    rows = []
    for mode, rs in runs.items():
        r = sorted(rs, key=lambda r: r["rps"])[len(rs) // 2]
        rows.append(r)
        print(f"{mode:<26}{r['rps']:>14.0f}{r['p50_ms']:>9.3f}{r['p99_ms']:>9.3f}"
              f"{r['front_us']:>10.1f}{r['worker_us']:>11.1f}")
    a = rows[0]
    for b in rows[1:]:
        print(f"frames vs {b['mode']}: {a['rps'] / b['rps']:.2f}x round trips/s, "
              f"{a['front_us'] + a['worker_us']:.0f} vs {b['front_us'] + b['worker_us']:.0f} µs CPU per request")


if __name__ == "__main__":
    main()
