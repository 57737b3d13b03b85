"""Front → worker designs: today's frames hop against direct paths (issue 14 item 2), and the hop alone.

``--part designs`` (default, with ``parsers``): one HTTP client (``--loadgen``: throughput.py's
keep-alive client, uvloop) against six server sides serving the same tiny raw ASGI app on
127.0.0.1, each started on an inherited listening socket:

(a) frames hop: uvicorn (uvloop + httptools) + a front ASGI app routing by a dict, forwarding over
    fnserve's frames (``Supervisor.acquire`` + ``upstream.forward``) to a ``runtime.worker``.
    The hop as the front has it, without the front's other layers (static, leases, logs).
(b) fd passing: an asyncio front reads the first request head, routes it (dict), hands the client
    socket and the bytes read to the worker (``socket.send_fds`` over a SOCK_SEQPACKET pair) and
    closes its copy; the worker serves every later request of that connection itself.
(e) (b) with the front keeping a dup of every passed socket and a shared slot table (mmap) the
    worker writes per request: what would let the front still answer 504 (``front_fdpass``).
(c) worker accepts: the worker accepts on the listening socket; no front process at all.
(d) HTTP/1.1 hop: uvicorn front proxying over keep-alive HTTP/1.1 on a Unix socket.
(n) native uvicorn (uvloop + httptools) serving the app itself: the reference, not a design.

(b), (c), (d) run the same worker: a pure-Python HTTP/1.1 server (``H1_WORKER``: asyncio.Protocol,
``bytes.find`` head split, keep-alive, Content-Length bodies only), stdlib only, run with
``python -I``: what the runtime could ship. Load profiles: 1 and 32 keep-alive connections, and 32
connections each closed after one request (``Connection: close``: the per-connection cost, e.g.
(b)'s handoff); 32 keep-alive connections whose requests alternate between two functions (each
one a hand-back in (b); (c), (d), (n) send both paths to one worker). The server side is pinned to one CPU, the client to the other; rounds interleave
the designs (A B C D / D C B A). Printed per design and profile: req/s, p50, CPU µs/request of the
front (the process on the listening socket) and the worker (its descendants; for (c) the worker is
the front), and ratios against (a). ``--part parsers``: µs per request head, the worker's
pure-Python parse against httptools. ``--part hop``: the older front→worker comparison without a
client ((a) frames, (b2) HTTP/1.1 to a stdlib server, (b1) to uvicorn).

    .venv/bin/python bench/ipc.py [--part designs,parsers,hop] [--designs abcd] [--rounds 3]
        [--seconds 1.5] [--no-uvloop | --worker-asyncio] [--requests N --inflight 16 --repeat 3 --pin]

Bounded: a default run takes about 2.5 minutes; every process started is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import mmap
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dev as bench  # wait_http, stop
import throughput  # the load generator's client, CPU of a process tree, the CPU split

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


def hop_main(args: argparse.Namespace) -> None:
    """``--part hop``: the front → worker hop alone (issue 4's comparison), no HTTP client."""
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




# ==================================================================================== direct path
# Issue 14 item 2: designs that let an instance serve the client connection itself, measured with
# a real HTTP client (``--loadgen``: throughput.py's keep-alive client) on 127.0.0.1.

# The worker of designs (b), (c), (d): a pure-Python HTTP/1.1 server (asyncio.Protocol, header
# split with bytes.find, keep-alive, Content-Length bodies only) around the same ASGI app: what the
# runtime could ship without putting anything of fnserve's on the function's import path. Modes:
#   listen FD   accept on an inherited listening socket (c)
#   fdpass FD   receive client sockets + the bytes the front already read over a SOCK_SEQPACKET
#               Unix socket (socket.recv_fds), then serve them (b)
#   uds PATH    listen on a Unix socket for a proxying front (d)
H1_WORKER = r'''
import asyncio, mmap, socket, struct, sys, time
sys.path.insert(0, sys.argv[3])
from api.bench import app
REASONS = {200: b"OK", 400: b"Bad Request", 404: b"Not Found"}


MINE = None  # fdpass: the paths this worker serves; a request for another goes back to the front
CHAN = None  # fdpass: the SOCK_SEQPACKET socket to the front
BOARD = None  # fdpass with the 504 guard: the slot table shared with the front (mmap, 8 bytes a slot:
#               monotonic ns a request started, 0 no request or its response started, -1 closed)


class H1(asyncio.Protocol):
    def __init__(self, initial=b"", slot=-1):
        self.initial, self.slot = initial, slot

    def mark(self, value):
        if self.slot >= 0:
            struct.pack_into("<q", BOARD, self.slot * 8, value)
            if value == -1:
                self.slot = -1  # the front may reuse the slot from now on

    def end(self):
        if self.slot >= 0:
            self.transport.write_eof()  # the front holds a dup: only shutdown() ends the connection
        self.transport.close()

    def connection_lost(self, exc):
        self.mark(-1)

    def connection_made(self, transport):
        self.transport, self.buf, self.busy, self.closing = transport, b"", False, False
        if self.initial:
            self.data_received(self.initial)

    def data_received(self, data):
        self.buf += data
        if not self.busy:
            self.next_request()

    def next_request(self):
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = self.buf[:end].split(b"\r\n")
        try:
            method, target, version = lines[0].split(b" ", 2)
        except ValueError:
            self.transport.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.end()
            return
        headers, length, close = [], 0, version != b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            headers.append((name, value))
            if name == b"content-length":
                length = int(value)
            elif name == b"connection":
                close = value.lower() == b"close"
        if len(self.buf) < end + 4 + length:
            return
        path, _, query = target.partition(b"?")
        if MINE is not None and path not in MINE:  # routes elsewhere: hand the connection back
            self.transport.pause_reading()
            self.mark(-1)
            socket.send_fds(CHAN, [self.buf], [self.transport.get_extra_info("socket").fileno()])
            self.transport.abort()
            return
        body, self.buf = self.buf[end + 4:end + 4 + length], self.buf[end + 4 + length:]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": version[5:].decode(),
                 "method": method.decode(), "scheme": "http", "path": path.decode("latin-1"), "raw_path": path,
                 "query_string": query, "root_path": "", "headers": headers,
                 "client": self.transport.get_extra_info("peername"),
                 "server": self.transport.get_extra_info("sockname")}
        self.busy, self.closing = True, close
        self.mark(time.monotonic_ns())
        asyncio.get_running_loop().create_task(self.run(scope, body))

    async def run(self, scope, body):
        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}
        out = []
        async def send(message):
            if message["type"] == "http.response.start":
                out.append(b"HTTP/1.1 %d %s\r\n" % (message["status"], REASONS.get(message["status"], b"X")))
                out.extend(b"%s: %s\r\n" % (k, v) for k, v in message["headers"])
                out.append(b"connection: close\r\n\r\n" if self.closing else b"\r\n")
            else:
                out.append(message.get("body", b""))
                if not message.get("more_body"):
                    self.transport.write(b"".join(out))
                    self.mark(0)
        await app(scope, receive, send)
        if self.closing:
            self.end()
            return
        self.busy = False
        self.next_request()


def main():
    mode, arg = sys.argv[1], sys.argv[2]
    try:
        import uvloop
        loop = uvloop.new_event_loop() if sys.argv[4] == "1" else asyncio.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if mode == "listen":
        sock = socket.socket(fileno=int(arg))
        loop.run_until_complete(loop.create_server(H1, sock=sock, backlog=1024))
    elif mode == "uds":
        loop.run_until_complete(loop.create_unix_server(H1, arg))
    else:  # fdpass
        global MINE, CHAN, BOARD
        MINE = {sys.argv[5].encode()}
        chan = CHAN = socket.socket(fileno=int(arg))
        chan.setblocking(False)
        if sys.argv[6]:
            with open(sys.argv[6], "r+b") as f:
                BOARD = mmap.mmap(f.fileno(), 0)

        def handed():
            while True:
                try:
                    data, fds, _flags, _addr = socket.recv_fds(chan, 65536, 1)
                except BlockingIOError:
                    return
                if not fds:
                    loop.stop()  # the front is gone
                    return
                client = socket.socket(fileno=fds[0])
                client.setblocking(False)
                slot = -1
                if BOARD is not None:
                    slot, data = int.from_bytes(data[:4], "little"), data[4:]
                loop.create_task(loop.connect_accepted_socket(lambda data=data, slot=slot: H1(data, slot), client))

        loop.add_reader(chan.fileno(), handed)
    loop.run_forever()


main()
'''

ROUTE = "/api/bench"
OTHER = "/api/other"  # a second function, same app: the "alternating" profile's every other request
FRONT_UVLOOP = {"on": True}  # --no-uvloop turns it off for fronts and workers alike
WORKER_UVLOOP = {"on": True}  # --worker-asyncio: workers on asyncio's loop (a function env without uvloop)


def _worker(root: Path, mode: str, arg: str, keep: tuple[int, ...] = (), route: str = "",
            board: str = "") -> subprocess.Popen[bytes]:
    """The pure-Python HTTP/1.1 worker as a child of this (front) process, isolated (``-I``);
    fdpass: ``route`` the path it serves (others are handed back), ``board`` the slot table file."""
    script = root / "h1worker.py"
    if not script.exists():
        script.write_text(H1_WORKER)
    return subprocess.Popen([sys.executable, "-I", str(script), mode, arg, str(root),
                             "1" if WORKER_UVLOOP["on"] else "0", route, board], cwd=root, pass_fds=keep)


def _uvicorn_on_fd(app: Any, fd: int, lifespan: Literal["on", "off"] = "on") -> None:
    import uvicorn

    config = uvicorn.Config(app, loop="uvloop" if FRONT_UVLOOP["on"] else "asyncio", http="httptools",
                            access_log=False, log_level="warning", lifespan=lifespan)
    uvicorn.Server(config).run(sockets=[socket.socket(fileno=fd)])  # not Config(fd=): uvicorn takes it as AF_UNIX


def front_frames(fd: int, root: Path) -> None:
    """(a) today's hop: uvicorn (httptools) + an ASGI front app that forwards every request over
    the frames protocol (``Supervisor.acquire`` + ``upstream.forward``) to a ``runtime.worker``."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from fnserve.project.types import Entry, EntryKind, Function, Layout
    from fnserve.server.upstream import forward
    from fnserve.supervisor import Supervisor, WorkerTarget

    fns = [Function(f"api/{m}.py", root / f"api/{m}.py", f"api.{m}", Layout.VERCEL,
                    Entry(EntryKind.APP, "app", 1), (root,)) for m in ("bench", "other")]
    sup = Supervisor([WorkerTarget.from_function(fn, root) for fn in fns], use_uvloop=WORKER_UVLOOP["on"])
    routes = {ROUTE: "api/bench.py", OTHER: "api/other.py"}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await sup.start()
                    await sup.acquire("api/bench.py")
                    await sup.acquire("api/other.py")
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await sup.shutdown(2)
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        fid = routes.get(scope["path"])
        if fid is None:
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await forward(await sup.acquire(fid), scope, receive, send)

    _uvicorn_on_fd(app, fd)


def front_h1proxy(fd: int, root: Path) -> None:
    """(d) the "b2" design: uvicorn front, HTTP/1.1 over a pool of keep-alive Unix-socket
    connections (httptools response parser) to the pure-Python HTTP/1.1 worker."""
    import httptools

    sock = str(root / "d.sock")
    proc = _worker(root, "uds", sock)
    pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    class Reply:
        def __init__(self) -> None:
            self.done = False
            self.headers: list[tuple[bytes, bytes]] = []
            self.body: list[bytes] = []

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.lower(), value))

        def on_body(self, body: bytes) -> None:
            self.body.append(body)

        def on_message_complete(self) -> None:
            self.done = True

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    for _ in range(1000):  # until the worker listens (bounded: 10 s)
                        if os.path.exists(sock):
                            break
                        await asyncio.sleep(0.01)
                    await send({"type": "lifespan.startup.complete"})
                else:
                    proc.terminate()
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["path"] not in (ROUTE, OTHER):  # both to the one worker: per-request cost is the same
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        body = (await receive()).get("body", b"")
        reader, writer = pool.pop() if pool else await asyncio.open_unix_connection(sock)
        head = [b"%s %s HTTP/1.1\r\n" % (scope["method"].encode(), scope["raw_path"])]
        head += [b"%s: %s\r\n" % (k, v) for k, v in scope["headers"] if k not in (b"content-length", b"connection")]
        head.append(b"content-length: %d\r\n\r\n" % len(body))
        writer.write(b"".join(head) + body)
        reply = Reply()
        parser = httptools.HttpResponseParser(reply)
        while not reply.done:
            parser.feed_data(await reader.read(65536))
        pool.append((reader, writer))
        await send({"type": "http.response.start", "status": parser.get_status_code(), "headers": reply.headers})
        await send({"type": "http.response.body", "body": b"".join(reply.body)})

    _uvicorn_on_fd(app, fd)


SLOTS = 1 << 16  # (e): connections the front can hold a dup of at once
MAX_DURATION_NS = 10 * 10**9  # (e): a request older than this would be answered 504 by the front


def front_fdpass(fd: int, root: Path, guard: bool = False) -> None:
    """(b) fd passing: an asyncio front reads the first request head, routes it (a dict lookup),
    passes the client socket and the bytes read to the function's worker (``socket.send_fds``
    over a SOCK_SEQPACKET pair), closes its copy; the worker serves the connection from then on.

    ``guard`` (e): the front keeps a dup of every passed socket and gives the worker a slot in a
    shared table (mmap) where the worker writes when a request starts, when its response starts
    and when the connection ends (no system call, no message); one sweep every 0.25 s closes the
    dups of ended connections and finds requests past ``MAX_DURATION_NS``, which the front could
    answer 504 on its dup after killing the instance (counted, not acted on: nothing here is slow)."""
    routes: dict[bytes, socket.socket] = {}  # path → the channel of the function's worker
    procs = []
    board_path = ""
    board: Any = None
    if guard:
        board_path = str(root / "board")
        with open(board_path, "wb") as f:
            f.truncate(SLOTS * 8)
        with open(board_path, "r+b") as f:
            board = mmap.mmap(f.fileno(), 0)
    held: dict[int, int] = {}  # slot → the front's dup of the client socket
    free = list(range(SLOTS - 1, -1, -1))
    overdue = [0]
    for path in (ROUTE, OTHER):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        procs.append(_worker(root, "fdpass", str(theirs.fileno()), keep=(theirs.fileno(),), route=path,
                             board=board_path))
        theirs.close()
        routes[path.encode()] = ours

    def route(buf: bytes, fd: int, keep: Callable[[], int] | None = None) -> bool:
        """Pass ``fd`` with ``buf`` (holding a complete request head) to its function's worker;
        False if no function has that path. ``keep`` (guard): returns the descriptor the front
        holds for the connection."""
        target = buf[:buf.find(b"\r\n")].split(b" ")[1]
        chan = routes.get(target.partition(b"?")[0])
        if chan is None:
            return False
        if guard and keep is not None:
            slot = free.pop()
            struct.pack_into("<q", board, slot * 8, 0)
            held[slot] = keep()
            buf = slot.to_bytes(4, "little") + buf
        # a non-blocking send on a local SEQPACKET socket: one small message; a full buffer would
        # raise (the prototype does not queue)
        socket.send_fds(chan, [buf], [fd])
        return True

    def sweep() -> None:
        now = time.monotonic_ns()
        for slot, dup in list(held.items()):
            started = struct.unpack_from("<q", board, slot * 8)[0]
            if started == -1:
                os.close(dup)
                del held[slot]
                free.append(slot)
            elif started > 0 and now - started > MAX_DURATION_NS:
                overdue[0] += 1
        loop.call_later(0.25, sweep)

    class Front(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: Any = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            if self.buf.find(b"\r\n\r\n") < 0:
                return
            self.transport.pause_reading()
            fd = self.transport.get_extra_info("socket").fileno()
            if route(self.buf, fd, lambda: os.dup(fd)):
                self.transport.abort()  # closes this process's copy only (no shutdown(): the worker holds one)
            else:
                self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                self.buf = b""
                self.transport.resume_reading()

    def handed_back(chan: socket.socket) -> None:
        """A worker returns a connection whose next request (in the bytes) is not its own."""
        while True:
            try:
                data, fds, _flags, _addr = socket.recv_fds(chan, 65536, 1)
            except BlockingIOError:
                return
            if not fds:
                return
            if route(data, fds[0], lambda fd=fds[0]: fd):
                if not guard:
                    os.close(fds[0])
            else:
                os.write(fds[0], b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                os.close(fds[0])

    loop = asyncio.new_event_loop()
    if FRONT_UVLOOP["on"]:
        import uvloop

        loop = uvloop.new_event_loop()
    for chan in routes.values():
        chan.setblocking(False)  # sends stay small; a full buffer would raise rather than block
        loop.add_reader(chan.fileno(), handed_back, chan)
    if guard:
        loop.call_later(0.25, sweep)
    server = loop.run_until_complete(loop.create_server(Front, sock=socket.socket(fileno=fd), backlog=1024))
    try:
        loop.run_forever()
    finally:
        server.close()
        for proc in procs:
            proc.terminate()


def front_listen(fd: int, root: Path) -> None:
    """(c) no front: the worker accepts on the inherited listening socket itself (exec, so the
    measured "front" process IS the worker)."""
    script = root / "h1worker.py"
    script.write_text(H1_WORKER)
    os.execv(sys.executable, [sys.executable, "-I", str(script), "listen", str(fd), str(root),
                              "1" if WORKER_UVLOOP["on"] else "0"])


def front_native(fd: int, root: Path) -> None:
    """(n) reference, not a design: uvicorn (uvloop + httptools) serving the app itself, no fnserve."""
    sys.path.insert(0, str(root))
    from api.bench import app  # type: ignore[import-not-found]  # written by designs_main

    _uvicorn_on_fd(app, fd, lifespan="off")


DESIGNS: dict[str, Callable[[int, Path], None]] = {
    "(a) frames hop": front_frames,
    "(b) fd passing": front_fdpass,
    "(e) fd pass + dup": lambda fd, root: front_fdpass(fd, root, guard=True),
    "(c) worker accepts": front_listen,
    "(d) HTTP/1.1 hop": front_h1proxy,
    "(n) native uvicorn": front_native,
}
PROFILES = (("keep-alive", 1), ("keep-alive", 32), ("new conn/req", 32), ("alternating", 32))


ALTERNATE = (f"GET {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(),
             f"GET {OTHER} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())


class _AlternatingClient(throughput._Client):
    """A keep-alive connection whose requests alternate between the two functions' paths."""

    turn = 0

    def send(self) -> None:
        self.turn += 1
        self.gen.request = ALTERNATE[self.turn % 2]  # read by the send below, synchronously
        super().send()


class _Alternating(throughput._Load):
    client = _AlternatingClient  # throughput._Load.connect makes one per connection


async def _loadgen_slice(port: int, conns: int, warm_at: float, until: float, kind: str) -> dict[str, Any]:
    """One window of throughput.py's client. ``kind``: "keep-alive"; "new conn/req" (every request
    says ``Connection: close``: the per-connection cost); "alternating" (keep-alive, each connection's
    requests alternate between two functions)."""
    gen = (_Alternating if kind == "alternating" else throughput._Load)(port, ROUTE, conns, warm_at, until)
    cpu0, wall0 = time.process_time(), time.monotonic()
    if kind == "new conn/req":
        gen.request = f"GET {ROUTE} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    for _ in range(conns):
        await gen.connect()
    try:
        await asyncio.wait_for(gen.finished, until - time.monotonic() + 10)
    except asyncio.TimeoutError:
        gen.errors.append(b"stuck")
    lat = sorted(gen.lat)
    return {"count": len(lat), "p50": lat[len(lat) // 2] * 1000 if lat else float("nan"),
            "errors": {code.decode(): gen.errors.count(code) for code in set(gen.errors)},
            "gen_cpu": (time.process_time() - cpu0) / (time.monotonic() - wall0)}


def loadgen_main() -> None:
    """``--loadgen``: one JSON command per stdin line → one JSON result per stdout line."""
    import uvloop

    loop = uvloop.new_event_loop()
    for line in sys.stdin:
        cmd = json.loads(line)
        print(json.dumps(loop.run_until_complete(_loadgen_slice(**cmd))), flush=True)


def _slice(gen: subprocess.Popen[str], root_pid: int, port: int, conns: int, kind: str,
           seconds: float) -> dict[str, Any]:
    """One measured window: req/s, p50, CPU µs/request of the root (front) and its descendants (worker)."""
    now = time.monotonic()
    warm_at, until = now + 0.3, now + 0.3 + seconds
    assert gen.stdin is not None and gen.stdout is not None
    gen.stdin.write(json.dumps({"port": port, "conns": conns, "warm_at": warm_at, "until": until,
                                "kind": kind}) + "\n")
    gen.stdin.flush()
    time.sleep(max(0.0, warm_at - time.monotonic()))
    pids = throughput.tree(root_pid)
    before = throughput.ticks(pids)
    time.sleep(max(0.0, until - time.monotonic()))
    after = throughput.ticks(pids)
    result: dict[str, Any] = json.loads(gen.stdout.readline())
    count = result["count"] or 1
    used = {pid: after.get(pid, t) - t for pid, t in before.items()}
    front = used.pop(root_pid, 0)
    result["rps"] = result["count"] / seconds
    result["front_ticks"], result["worker_ticks"] = front, sum(used.values())
    result["front_us"] = front / throughput.TICK * 1e6 / count
    result["worker_us"] = sum(used.values()) / throughput.TICK * 1e6 / count
    return result


def designs_main(args: argparse.Namespace) -> None:
    """Run every design under the same load profiles, interleaved rounds; print the table and ratios vs (a)."""
    FRONT_UVLOOP["on"] = not args.no_uvloop
    names = [n for n in DESIGNS if n[1] in args.designs]
    gen = subprocess.Popen([sys.executable, __file__, "--loadgen"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           text=True, preexec_fn=lambda: os.sched_setaffinity(0, throughput.LOAD_CPUS))
    os.sched_setaffinity(0, throughput.LOAD_CPUS)
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="fnserve-direct-") as tmp:
        try:
            for i, name in enumerate(names):
                root = Path(tmp) / f"d{i}"
                (root / "api").mkdir(parents=True)
                (root / "api" / "bench.py").write_text(APP)
                (root / "api" / "other.py").write_text(APP)
                listener = socket.create_server(("127.0.0.1", 0), backlog=1024)
                port = listener.getsockname()[1]
                proc = subprocess.Popen(
                    [sys.executable, __file__, "--serve", name[1], str(listener.fileno()), str(root)]
                    + (["--no-uvloop"] if args.no_uvloop else []) + (["--worker-asyncio"] if args.worker_asyncio else []),
                    cwd=root, pass_fds=(listener.fileno(),), start_new_session=True,
                    preexec_fn=lambda: os.sched_setaffinity(0, throughput.SERVER_CPUS))
                listener.close()
                servers[name] = (proc, port)
            for proc, port in servers.values():
                bench.wait_http(port, ROUTE, timeout=60)
                _slice(gen, proc.pid, port, 32, "alternating", 0.5)  # warm: every function started
            for r in range(args.rounds):
                for name in names if r % 2 == 0 else reversed(names):
                    proc, port = servers[name]
                    for i, (kind, conns) in enumerate(PROFILES):
                        runs.setdefault((name, i), []).append(
                            _slice(gen, proc.pid, port, conns, kind, args.seconds))
        finally:
            assert gen.stdin is not None
            gen.stdin.close()
            gen.wait(10)
            for proc, _port in servers.values():
                bench.stop(proc)
    print(f"direct-path designs: server side pinned to CPU {sorted(throughput.SERVER_CPUS)}, load generator "
          f"to CPU {sorted(throughput.LOAD_CPUS)}; {args.rounds} interleaved rounds of {args.seconds:g} s per "
          f"design and profile; uvloop: fronts {'off' if args.no_uvloop else 'on'}, workers "
          f"{'off' if args.no_uvloop or args.worker_asyncio else 'on'}; Python {sys.version.split()[0]}; "
          f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'design':20} {'profile':16} {'req/s':>8} {'p50 ms':>7} {'front µs':>9} {'worker µs':>10} "
          f"{'total µs':>9} {'CPU vs (a)':>10} {'req/s vs (a)':>12}")
    merged: dict[tuple[str, int], dict[str, Any]] = {}
    for key, rs in runs.items():
        count = sum(r["count"] for r in rs) or 1
        merged[key] = {
            "rps": statistics.mean(r["rps"] for r in rs), "p50": statistics.mean(r["p50"] for r in rs),
            "gen_cpu": max(r["gen_cpu"] for r in rs),
            "front_us": sum(r["front_ticks"] for r in rs) / throughput.TICK * 1e6 / count,
            "worker_us": sum(r["worker_ticks"] for r in rs) / throughput.TICK * 1e6 / count,
            "errors": {},
        }
        for run in rs:
            for k, v in run["errors"].items():
                merged[key]["errors"][k] = merged[key]["errors"].get(k, 0) + v
    base_name = names[0]
    for i, (kind, conns) in enumerate(PROFILES):
        base = merged[(base_name, i)]
        for name in names:
            m = merged[(name, i)]
            total = m["front_us"] + m["worker_us"]
            flag = "*" if m["gen_cpu"] > 0.9 else " "
            print(f"{name:20} {kind + ' c=' + str(conns):16} {m['rps']:8.0f}{flag}{m['p50']:7.3f} {m['front_us']:9.1f} "
                  f"{m['worker_us']:10.1f} {total:9.1f} {(base['front_us'] + base['worker_us']) / total:9.2f}x "
                  f"{m['rps'] / base['rps']:11.2f}x")
    for key, m in merged.items():
        if m["errors"]:
            print(f"  WARNING {key[0]} profile {PROFILES[key[1]]}: errors {m['errors']}")
    print("(CPU vs (a): (a)'s total µs / this design's, >1 = cheaper; front µs of (c) is the worker itself: "
          "it has no front; 'new conn/req': Connection: close on every request; '*': the load generator used "
          "over 90 % of its CPU, so req/s is its limit, not the server's)")


# ==================================================================================== parsers
PARSER_HEADS = {
    "curl-like (3 headers)": b"GET /api/bench?x=1 HTTP/1.1\r\nHost: 127.0.0.1:3000\r\nUser-Agent: curl/8.5.0\r\n"
                             b"Accept: */*\r\n\r\n",
    "browser-like (12 headers)": (
        b"GET /api/items/42?sort=desc&page=3 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n"
        b"sec-ch-ua: \"Chromium\";v=\"124\"\r\nsec-ch-ua-mobile: ?0\r\nUser-Agent: Mozilla/5.0 (X11; Linux "
        b"x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36\r\nAccept: text/html,"
        b"application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\nSec-Fetch-Site: none\r\nSec-Fetch-Mode: "
        b"navigate\r\nSec-Fetch-Dest: document\r\nAccept-Encoding: gzip, deflate, br\r\nAccept-Language: "
        b"en-US,en;q=0.9\r\nCookie: session=0123456789abcdef0123456789abcdef; theme=dark\r\n\r\n"),
}


def parse_python(buf: bytes) -> tuple[bytes, bytes, list[tuple[bytes, bytes]], int]:
    """The worker's pure-Python head parse (H1_WORKER.next_request without the ASGI part)."""
    end = buf.find(b"\r\n\r\n")
    lines = buf[:end].split(b"\r\n")
    method, target, _version = lines[0].split(b" ", 2)
    headers, length = [], 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        headers.append((name, value))
        if name == b"content-length":
            length = int(value)
    return method, target, headers, length


def parsers_main(n: int) -> None:
    """µs per request head: the pure-Python parse vs httptools building the same (name, value) list."""
    try:
        import httptools
    except ImportError:
        httptools = None  # type: ignore[assignment]  # the row says "not importable"

    class Sink:
        def __init__(self) -> None:
            self.headers: list[tuple[bytes, bytes]] = []
            self.url = b""

        def on_url(self, url: bytes) -> None:
            self.url = url

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.lower(), value))

    print(f"request head parse, {n} iterations each (best of 5), Python {sys.version.split()[0]}")
    for label, head in PARSER_HEADS.items():
        row = []
        for name, fn in (("pure Python", lambda head=head: parse_python(head)),
                         ("httptools", (lambda head=head: httptools.HttpRequestParser(Sink()).feed_data(head)) if httptools else None)):
            if fn is None:
                row.append(f"{name} not importable")
                continue
            best = min(_timed(fn, n) for _ in range(5))
            row.append(f"{name} {best * 1e6:.2f} µs")
        print(f"  {label:28} " + ", ".join(row))


def _timed(fn: Callable[[], object], n: int) -> float:
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="designs,parsers", help="comma-separated: designs, parsers, hop")
    ap.add_argument("--designs", default="abecdn", help="designs: letters of a, b, c, d, e, n ((a) first: the baseline)")
    ap.add_argument("--rounds", type=int, default=3, help="designs: interleaved rounds")
    ap.add_argument("--seconds", type=float, default=1.5, help="designs: measured seconds per slice")
    ap.add_argument("--parse-iterations", type=int, default=20000, help="parsers: iterations per timing")
    ap.add_argument("--requests", type=int, default=20000, help="hop: requests per mode")
    ap.add_argument("--inflight", type=int, default=16, help="hop: requests in flight")
    ap.add_argument("--repeat", type=int, default=3, help="hop: rounds; each mode's median round is shown")
    ap.add_argument("--no-uvloop", action="store_true", help="asyncio's loop everywhere")
    ap.add_argument("--worker-asyncio", action="store_true",
                    help="designs: workers on asyncio's loop, fronts and native uvicorn on uvloop")
    ap.add_argument("--pin", action="store_true", help="hop: pin the front to CPU 0 and the worker to CPU 1")
    args = ap.parse_args()
    parts = args.part.split(",")
    if "designs" in parts:
        designs_main(args)
    if "parsers" in parts:
        parsers_main(args.parse_iterations)
    if "hop" in parts:
        hop_main(args)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--loadgen"]:
        loadgen_main()
    elif sys.argv[1:2] == ["--serve"]:  # --serve LETTER FD ROOT [--no-uvloop]: one design's server side
        FRONT_UVLOOP["on"] = "--no-uvloop" not in sys.argv
        WORKER_UVLOOP["on"] = FRONT_UVLOOP["on"] and "--worker-asyncio" not in sys.argv
        {n[1]: f for n, f in DESIGNS.items()}[sys.argv[2]](int(sys.argv[3]), Path(sys.argv[4]))
    else:
        main()
