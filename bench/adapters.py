"""Adapter benchmark: each entry kind served through fnserve's runtime adapter on uvicorn vs the
same app served natively, driven by the same load generator (issue 3 acceptance; goal >= 0.9x).

    python bench/adapters.py [--requests 60000] [--connections 8] [--seconds 16] [--slices 16]
                                 [--only KIND] [--concurrency 16]

Pairs (adapter → native): handler class → ``http.server.ThreadingHTTPServer`` (HTTP/1.1 keep-alive,
TCP_NODELAY); Flask → gunicorn (sync, 1 worker); FastAPI → bare uvicorn. Every server is its own
process on 127.0.0.1; uvicorn runs with httptools + uvloop and without Server/Date headers for
both sides. The load generator is a separate process: ``--connections`` keep-alive raw-socket
clients (reconnecting when the server closes, as gunicorn sync does). Both servers of a pair
run at once and the load alternates between them in ``--slices`` slices (A B B A A B ...) that
share ``--seconds`` and ``--requests``: the machine is shared and noisy, and interleaving makes a
change in its load hit both sides alike. Printed: requests/s, p50 and p99 latency (ms), server
CPU per request (us, the server's process tree, from /proc), adapter/native ratios.
Runtime: about 60 s with the defaults.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SRC = HERE.parent / "src"
BIN = Path(sys.executable).parent

APPS = {
    "handler_app.py": '''
import json
from http.server import BaseHTTPRequestHandler

BODY = json.dumps({"hello": "world"}).encode()


class handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # native server: no Nagle stall with keep-alive

    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format, *args):
        pass
''',
    "flask_app.py": '''
from flask import Flask, jsonify

app = Flask(__name__)


@app.get("/")
def index():
    return jsonify(hello="world")
''',
    "fastapi_app.py": '''
from fastapi import FastAPI

app = FastAPI()


@app.get("/")
async def index():
    return {"hello": "world"}
''',
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- servers (each runs in its own process) -------------------------------------------------------


def serve(kind, port, folder, concurrency=16):
    os.chdir(folder)
    if kind == "native-handler":
        from http.server import ThreadingHTTPServer

        sys.path.insert(0, folder)
        from handler_app import handler

        ThreadingHTTPServer.daemon_threads = True
        ThreadingHTTPServer.request_queue_size = 128  # the default 5 drops SYNs of a burst of connects
        ThreadingHTTPServer(("127.0.0.1", port), handler).serve_forever()
        return
    import uvicorn

    if kind == "native-fastapi":
        sys.path.insert(0, folder)
        from fastapi_app import app
        fn = None
    else:
        sys.path.insert(0, str(SRC))
        from fnserve.runtime.loader import load_function

        module, attr = {"adapter-handler": ("handler_app", "handler"), "adapter-flask": ("flask_app", "app"),
                        "adapter-fastapi": ("fastapi_app", "app")}[kind]
        fn = load_function({"id": module + ".py", "path": os.path.join(folder, module + ".py"), "module": module,
                            "attr": attr, "kind": "app", "layout": "vercel", "import_roots": [folder],
                            "project_root": folder, "body_limit": 4_500_000,
                            "concurrency": concurrency})
        app = fn.app
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools",
                            lifespan="off", log_level="warning", access_log=False,
                            server_header=False, date_header=False)
    server = uvicorn.Server(config)

    async def main():
        if fn is not None:
            await fn.startup()
        await server.serve()
        if fn is not None:
            await fn.shutdown(2.0)

    import uvloop

    uvloop.run(main())


def start(kind, port, folder, concurrency=16):
    if kind == "native-flask":
        cmd = [str(BIN / "gunicorn"), "-w", "1", "-k", "sync", "-b", "127.0.0.1:%d" % port,
               "--chdir", folder, "--log-level", "warning", "flask_app:app"]
    else:
        cmd = [sys.executable, __file__, "--serve", kind, "--port", str(port), "--dir", folder,
               "--concurrency", str(concurrency)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("%s exited with %s" % (kind, proc.returncode))
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("%s did not start listening on port %d within 20 s" % (kind, port))


# -- load generator (its own process) -----------------------------------------------------------


async def client(port, state, latencies, deadline, conn):
    """One client: sequential keep-alive requests on ``conn`` (a one-item list holding the
    (reader, writer) pair, kept across slices; reopened when the server closes it)."""
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: fnserve-bench\r\n\r\n"
    while state["left"] > 0 and time.perf_counter() < deadline:
        state["left"] -= 1
        if conn[0] is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn[0] = (reader, writer)
        reader, writer = conn[0]
        t0 = time.perf_counter()
        writer.write(request)
        head = (await reader.readuntil(b"\r\n\r\n")).lower()
        start = head.index(b"content-length:") + 15
        await reader.readexactly(int(head[start:head.index(b"\r\n", start)]))
        latencies.append(time.perf_counter() - t0)
        if not head.startswith((b"http/1.1 200", b"http/1.0 200")):
            state["errors"] += 1
        if b"connection: close" in head or head.startswith(b"http/1.0"):
            writer.close()
            conn[0] = None


def tree_cpu(pid):
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants (Linux /proc;
    0.0 elsewhere)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    stats = {}
    for entry in os.listdir("/proc") if os.path.isdir("/proc") else []:
        if entry.isdigit():
            try:
                fields = Path("/proc", entry, "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        total += stats.get(current, (0, 0.0))[1]
        todo.extend(child for child, (ppid, _) in stats.items() if ppid == current)
    return total


async def load(ports, pids, requests, connections, seconds, slices):
    """Alternate the load between the servers (A B B A A B ...) in ``slices`` slices sharing
    ``seconds`` and ``requests``, so a change in the machine's load hits both sides alike."""
    sides = [{"n": 0, "errors": 0, "elapsed": 0.0, "cpu": 0.0, "latencies": []} for _ in ports]
    conns = [[[None] for _ in range(connections)] for _ in ports]
    for port, side_conns in zip(ports, conns):  # warm-up (not measured); opens the connections
        warm = {"left": 200, "errors": 0}
        await asyncio.gather(*(client(port, warm, [], time.perf_counter() + 5, c) for c in side_conns))
    per_slice = max(1, requests // slices)
    for i in range(slices):
        side = (i + i // 2) % 2
        state = {"left": per_slice, "errors": 0}
        cpu0 = tree_cpu(pids[side])
        t0 = time.perf_counter()
        latencies = sides[side]["latencies"]
        before = len(latencies)
        await asyncio.gather(*(client(ports[side], state, latencies, t0 + seconds / slices, c) for c in conns[side]))
        sides[side]["elapsed"] += time.perf_counter() - t0
        sides[side]["cpu"] += tree_cpu(pids[side]) - cpu0
        sides[side]["n"] += len(latencies) - before
        sides[side]["errors"] += state["errors"]
    out = []
    for side in sides:
        lat = sorted(side["latencies"])
        n = len(lat)
        out.append({"requests": n, "errors": side["errors"], "rps": n / side["elapsed"],
                    "p50": lat[n // 2] * 1000, "p99": lat[min(n - 1, int(n * 0.99))] * 1000,
                    "cpu_us": side["cpu"] * 1e6 / max(1, n)})
    return out


def measure(ports, pids, args):
    out = subprocess.run([sys.executable, __file__, "--load", "--ports", ",".join(map(str, ports)),
                          "--pids", ",".join(map(str, pids)), "--requests", str(args.requests),
                          "--connections", str(args.connections), "--seconds", str(args.seconds),
                          "--slices", str(args.slices)],
                         capture_output=True, text=True, timeout=args.seconds + 60)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=60000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=16.0, help="measured seconds per pair (both sides)")
    parser.add_argument("--slices", type=int, default=16, help="alternations between the two servers")
    parser.add_argument("--concurrency", type=int, default=16, help="adapter threads (SPEC §5 default 16)")
    parser.add_argument("--only", default="", help="run only the kinds whose label contains this")
    parser.add_argument("--serve")
    parser.add_argument("--port", type=int)
    parser.add_argument("--ports")
    parser.add_argument("--pids")
    parser.add_argument("--dir")
    parser.add_argument("--load", action="store_true")
    args = parser.parse_args()
    if args.serve:
        return serve(args.serve, args.port, args.dir, args.concurrency)
    if args.load:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
        ports = [int(p) for p in args.ports.split(",")]
        pids = [int(p) for p in args.pids.split(",")]
        print(json.dumps(asyncio.run(load(ports, pids, args.requests, args.connections, args.seconds, args.slices))))
        return None
    folder = tempfile.mkdtemp(prefix="fnserve-bench-")
    try:
        for name, text in APPS.items():
            Path(folder, name).write_text(text)
        rows = []
        for label, adapter, native in [("handler", "adapter-handler", "native-handler"),
                                       ("flask (wsgi)", "adapter-flask", "native-flask"),
                                       ("fastapi (asgi)", "adapter-fastapi", "native-fastapi")]:
            if args.only not in label:
                continue
            procs, ports = [], []
            try:
                for kind in (adapter, native):
                    ports.append(free_port())
                    procs.append(start(kind, ports[-1], folder, args.concurrency))
                results = measure(ports, [p.pid for p in procs], args)
            finally:
                for proc in procs:
                    proc.terminate()
                for proc in procs:
                    try:
                        proc.wait(10)
                    except subprocess.TimeoutExpired:
                        proc.kill()
            result = {adapter: results[0], native: results[1]}
            rows.append((label, adapter, native, result))
        print("%-16s %-16s %9s %8s %8s %9s %6s" % ("kind", "server", "req/s", "p50 ms", "p99 ms", "CPU us/req", "errors"))
        for label, adapter, native, result in rows:
            for kind in (adapter, native):
                r = result[kind]
                print("%-16s %-16s %9.0f %8.2f %8.2f %9.0f %6d" % (label, kind, r["rps"], r["p50"], r["p99"], r["cpu_us"], r["errors"]))
        print()
        for label, adapter, native, result in rows:
            a, n = result[adapter], result[native]
            print("%-16s adapter/native: throughput %.2fx   p50 %.2fx   p99 %.2fx   CPU/request %.2fx" % (
                label, a["rps"] / n["rps"], a["p50"] / n["p50"], a["p99"] / n["p99"],
                a["cpu_us"] / n["cpu_us"] if n["cpu_us"] else float("nan")))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return None


if __name__ == "__main__":
    main()
