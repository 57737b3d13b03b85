"""``fnserve start`` against the best native servers, CPU per request first (issue 14 acceptance).

For the functions of ``examples/showcase`` — FastAPI, a raw ASGI app, Flask and a handler class —
one run measures ``fnserve start`` and, for the same app, the best native servers:

=========  ==================  ======================================================
app        path                native servers
=========  ==================  ======================================================
fastapi    /api/fastapi_app/.  uvicorn (uvloop + httptools), granian (ASGI)
asgi       /api/asgi_raw       uvicorn, granian (ASGI)
flask      /api/flask_app      granian (WSGI interface), gunicorn sync
handler    /api/hello          ``http.server.ThreadingHTTPServer`` (HTTP/1.1, TCP_NODELAY)
=========  ==================  ======================================================

Per server and client concurrency (``--conc``, default 1 and 32 keep-alive connections):
requests/s, p50/p99 latency and **CPU µs per request summed over the server's process tree**
(``/proc/<pid>/stat`` utime + stime of the server and all its descendants — front, zygotes,
instances, granian's workers — read at the start and end of each measured window). Every server
tree is pinned to one CPU (``os.sched_setaffinity``, inherited by what it forks) and the load
generator (plus this script) to another, so "same cores" holds for everyone. Rounds are
interleaved (each round visits every server of the app, in an order that alternates A B C / C B A)
so the shared machine's drift hits every server alike; figures are the means over rounds.

Printed: a row per (app, server, concurrency) and a summary per app with fnserve's ratios against
the best native server: CPU efficiency (native µs / fnserve µs: 1.0 = as cheap), throughput at the
highest concurrency, and the p50 added at one connection. A load-generator CPU above 90 % of its
core is flagged ``*`` (then req/s is the generator's limit, CPU µs/request is still right).
Issue 14's goal: ≥ 0.8× the best native, ≤ 0.1 ms added p50.

``fnserve start`` runs with its production defaults (access log on, written to a file; request
ids; metrics); ``--variant NAME='--flag value ...'`` adds more ``fnserve start`` servers with extra
flags, measured in the same rounds (e.g. ``--variant c32='--concurrency-sync 32'``), and
``--baseline DIR`` one more run from another source tree (``PYTHONPATH=DIR``, e.g. the ``src/`` of
``git archive main src | tar -x -C /tmp/base``): before/after in one run, interleaved.

The load generator is this file with ``--loadgen``: one process for the whole run (uvloop, raw
keep-alive sockets as ``asyncio.Protocol``s, reconnecting when a server closes after each
response), told what to load over stdin. 127.0.0.1 only; every process started is killed at the
end; the default run takes about 3 minutes (``--cap`` stops starting new apps after that many s).

    .venv/bin/python bench/throughput.py [--apps fastapi,asgi,flask,handler] [--rounds 3]
        [--seconds 1.5] [--conc 1,32] [--variant NAME=ARGS ...] [--baseline SRC] [--cap 220]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dev as bench  # the showcase, free_port, wait_http, stop

PY = sys.executable
BIN = Path(PY).parent
TICK = os.sysconf("SC_CLK_TCK")

HANDLER_SERVER = """
import sys
from http.server import ThreadingHTTPServer
sys.path.insert(0, ".")
from api.hello import handler
ThreadingHTTPServer.request_queue_size = 128  # the default 5 drops SYNs under many connections
class H(handler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    def log_message(self, *args):  # as quiet as the other native servers (no access log)
        pass
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


def _uvicorn(target: str) -> Callable[[int], list[str]]:
    return lambda port: [PY, "-m", "uvicorn", target, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
                         "--no-access-log", "--log-level", "warning"]


def _granian(target: str, interface: str) -> Callable[[int], list[str]]:
    return lambda port: [str(BIN / "granian"), "--interface", interface, "--host", "127.0.0.1", "--port", str(port),
                         "--workers", "1", "--http", "1", "--no-ws", "--loop", "uvloop", "--log-level", "warning",
                         target]


APPS: dict[str, tuple[str, dict[str, Callable[[int], list[str]]]]] = {  # app: (path, {native server: argv})
    "fastapi": ("/api/fastapi_app/items", {
        "uvicorn": _uvicorn("api.fastapi_app:app"),
        "granian": _granian("api.fastapi_app:app", "asgi"),
    }),
    "asgi": ("/api/asgi_raw", {
        "uvicorn": _uvicorn("api.asgi_raw:app"),
        "granian": _granian("api.asgi_raw:app", "asgi"),
    }),
    "flask": ("/api/flask_app", {
        "granian-wsgi": _granian("api.flask_app:app", "wsgi"),
        "gunicorn sync": lambda port: [PY, "-m", "gunicorn", "-w", "1", "-k", "sync", "-b", f"127.0.0.1:{port}",
                                       "--log-level", "warning", "api.flask_app:app"],
    }),
    "handler": ("/api/hello", {
        "ThreadingHTTPServer": lambda port: [PY, "-c", HANDLER_SERVER, str(port)],
    }),
}


# ------------------------------------------------------------------------------ CPU of a process tree
def _stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime + stime ticks) of ``pid``, None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), int(fields[11]) + int(fields[12])


def tree(root: int) -> list[int]:
    """``root`` and all its descendants (one scan of /proc)."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = _stat(int(name))
            if st is not None:
                parents.setdefault(st[0], []).append(int(name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(parents.get(pid, ()))
    return out


def ticks(pids: list[int]) -> dict[int, int]:
    out = {}
    for pid in pids:
        st = _stat(pid)
        if st is not None:
            out[pid] = st[1]
    return out


# ------------------------------------------------------------------------------ load generator
class _Client(asyncio.Protocol):
    """One keep-alive connection sending the same GET in a loop (a new connection when the
    server closes after a response)."""

    def __init__(self, gen: _Load) -> None:
        self.gen = gen
        self.buf = b""
        self.t0 = 0.0
        self.closing = False  # closed by this side (the window ended, or the server said close)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.send()

    def send(self) -> None:
        assert self.transport is not None
        self.buf = b""
        self.t0 = time.monotonic()
        if self.t0 >= self.gen.until:
            self.closing = True
            self.transport.close()
            self.gen.ended()
            return
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        buf = self.buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = buf[:end].lower()
        m = re.search(rb"\r\ncontent-length: *(\d+)", head)
        if m:
            if len(buf) < end + 4 + int(m.group(1)):
                return
        elif not buf.endswith(b"\r\n0\r\n\r\n"):  # chunked: wait for the last chunk
            return
        self.gen.done(self.t0, buf[9:12])
        if b"\r\nconnection: close" in head:
            assert self.transport is not None
            self.closing = True
            self.transport.close()
            self.gen.reconnect()
        else:
            self.send()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closing:  # the server closed a keep-alive connection or cut a response
            self.gen.errors.append(b"eof")
            self.gen.reconnect()


class _Load:

    client: type[_Client] = _Client  # the protocol of each connection (bench/ipc.py alternates paths with its own)
    def __init__(self, port: int, path: str, conns: int, warm_at: float, until: float) -> None:
        self.port, self.warm_at, self.until = port, warm_at, until
        self.request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        self.lat: list[float] = []
        self.errors: list[bytes] = []
        self.open = conns
        self.finished = asyncio.get_running_loop().create_future()

    def done(self, t0: float, status: bytes) -> None:
        t1 = time.monotonic()
        if t0 >= self.warm_at and t1 <= self.until:
            self.lat.append(t1 - t0)
            if status != b"200":
                self.errors.append(status)

    def ended(self) -> None:
        self.open -= 1
        if self.open <= 0 and not self.finished.done():
            self.finished.set_result(None)

    def reconnect(self) -> None:
        if time.monotonic() >= self.until:
            self.ended()
            return
        asyncio.get_running_loop().create_task(self.connect())

    async def connect(self) -> None:
        try:
            await asyncio.get_running_loop().create_connection(lambda: self.client(self), "127.0.0.1", self.port)
        except OSError:
            self.errors.append(b"connect")
            await asyncio.sleep(0.01)
            self.reconnect()


async def _load(port: int, path: str, conns: int, warm_at: float, until: float) -> dict[str, Any]:
    gen = _Load(port, path, conns, warm_at, until)
    cpu0, wall0 = time.process_time(), time.monotonic()
    for _ in range(conns):
        await gen.connect()
    try:
        await asyncio.wait_for(gen.finished, until - time.monotonic() + 10)
    except asyncio.TimeoutError:
        gen.errors.append(b"stuck")
    lat = sorted(gen.lat)
    return {
        "count": len(lat),
        "p50": lat[len(lat) // 2] * 1000 if lat else float("nan"),
        "p99": lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan"),
        "errors": {code.decode(): gen.errors.count(code) for code in set(gen.errors)},
        "gen_cpu": (time.process_time() - cpu0) / (time.monotonic() - wall0),
    }


def loadgen_main() -> None:
    """``--loadgen``: one JSON command per stdin line → one JSON result per stdout line."""
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    for line in sys.stdin:
        cmd = json.loads(line)
        result = loop.run_until_complete(_load(cmd["port"], cmd["path"], cmd["conns"], cmd["warm_at"], cmd["until"]))
        print(json.dumps(result), flush=True)


# ------------------------------------------------------------------------------ servers
def _cpus() -> tuple[set[int], set[int]]:
    """(server CPUs, load-generator CPUs): one each when at least two are allowed."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return set(allowed), set(allowed)
    return {allowed[0]}, {allowed[1]}


SERVER_CPUS, LOAD_CPUS = _cpus()


def _pinned() -> None:
    os.sched_setaffinity(0, SERVER_CPUS)


def launch(argv: list[str], cwd: Path, out: Any = subprocess.DEVNULL) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_pinned)


def fnserve_start(project: Path, extra: list[str], log: Path, src: str | None = None) -> tuple[subprocess.Popen[bytes], int]:
    """``fnserve start`` on ``project`` pinned to the server CPU (``src``: the fnserve source tree
    to run instead of the installed one); (process, port from its log)."""
    env = dict(os.environ, PYTHONPATH=src) if src else None
    proc = subprocess.Popen([PY, "-m", "fnserve", "start", str(project), "--port", "0", "--no-install", *extra],
                            cwd=project, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=_pinned, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = re.search(r"fnserve start: http://127\.0\.0\.1:(\d+)", log.read_text())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    bench.stop(proc)
    raise RuntimeError("fnserve start printed no URL:\n" + log.read_text())


class Runner:
    """The load generator process and the measured slices."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.proc = subprocess.Popen([PY, __file__, "--loadgen"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, preexec_fn=lambda: os.sched_setaffinity(0, LOAD_CPUS))

    def slice(self, root: int, port: int, path: str, conns: int, seconds: float | None = None) -> dict[str, Any]:
        """One measured window on ``port``; CPU µs/request over the process tree of ``root``."""
        seconds = seconds or self.seconds
        now = time.monotonic()
        warm_at, until = now + 0.35, now + 0.35 + seconds
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"port": port, "path": path, "conns": conns, "warm_at": warm_at,
                                          "until": until}) + "\n")
        self.proc.stdin.flush()
        pids = tree(root)
        time.sleep(max(0.0, warm_at - time.monotonic()))
        before = ticks(pids)
        time.sleep(max(0.0, until - time.monotonic()))
        after = ticks(pids)
        born = [pid for pid in tree(root) if pid not in before]
        used = sum(after.get(pid, t) - t for pid, t in before.items()) + sum(ticks(born).values())
        result = json.loads(self.proc.stdout.readline())
        result["rps"] = result["count"] / seconds
        result["cpu_us"] = used / TICK * 1e6 / result["count"] if result["count"] else float("nan")
        return result

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.wait(10)


# ------------------------------------------------------------------------------ main
def _merge(runs: list[dict[str, Any]]) -> dict[str, Any]:
    errors: dict[str, int] = {}
    for r in runs:
        for k, v in r["errors"].items():
            errors[k] = errors.get(k, 0) + v
    count = sum(r["count"] for r in runs)
    cpu = sum(r["cpu_us"] * r["count"] for r in runs if r["count"]) / count if count else float("nan")
    return {"rps": statistics.mean(r["rps"] for r in runs), "cpu_us": cpu,
            "p50": statistics.mean(r["p50"] for r in runs), "p99": statistics.mean(r["p99"] for r in runs),
            "gen_cpu": max(r["gen_cpu"] for r in runs), "errors": errors, "rounds": len(runs)}


def measure_app(runner: Runner, app: str, starts: dict[str, tuple[subprocess.Popen[bytes], int]], project: Path,
                rounds: int, concs: list[int]) -> dict[tuple[str, int], dict[str, Any]]:
    path, natives = APPS[app]
    servers: dict[str, tuple[int, int]] = {name: (proc.pid, port) for name, (proc, port) in starts.items()}
    procs = []
    try:
        for name, argv in natives.items():
            port = bench.free_port()
            proc = launch(argv(port), project)
            procs.append(proc)
            servers[name] = (proc.pid, port)
        for name, (_pid, port) in servers.items():
            bench.wait_http(port, path, timeout=60)
            runner.slice(servers[name][0], port, path, max(concs), 0.5)  # warm: instances started, JIT-free paths hot
        runs: dict[tuple[str, int], list[dict[str, Any]]] = {}
        order = list(servers)
        for r in range(rounds):
            for name in order if r % 2 == 0 else reversed(order):
                pid, port = servers[name]
                for conns in concs:
                    runs.setdefault((name, conns), []).append(runner.slice(pid, port, path, conns))
    finally:
        for proc in procs:
            bench.stop(proc)
    return {key: _merge(rs) for key, rs in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--apps", default=",".join(APPS), help="comma-separated: " + ", ".join(APPS))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds per app")
    ap.add_argument("--seconds", type=float, default=1.5, help="measured seconds per slice")
    ap.add_argument("--conc", default="1,32", help="client concurrencies (keep-alive connections)")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=ARGS",
                    help="another fnserve start with these extra flags, measured alongside")
    ap.add_argument("--baseline", metavar="SRC", help="also run fnserve start from this source tree (PYTHONPATH)")
    ap.add_argument("--cap", type=float, default=220.0, help="start no new app after this many s")
    opts = ap.parse_args()
    apps = [a for a in opts.apps.split(",") if a]
    concs = sorted(int(c) for c in opts.conc.split(","))
    variants = {"fnserve start": []} | {v.split("=", 1)[0]: shlex.split(v.split("=", 1)[1]) for v in opts.variant}
    sources = {"baseline": opts.baseline} if opts.baseline else {}
    variants |= {name: [] for name in sources}
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below
    os.sched_setaffinity(0, LOAD_CPUS)
    began = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="fnserve-throughput-"))
    project = tmp / "showcase"
    shutil.copytree(bench.SHOWCASE, project, ignore=shutil.ignore_patterns(".fnserve", "__pycache__"))
    starts: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    results: dict[str, dict[tuple[str, int], dict[str, Any]]] = {}
    runner = Runner(opts.seconds)
    access_lines = 0
    load = os.getloadavg()
    try:
        for i, (name, extra) in enumerate(variants.items()):
            starts[name] = fnserve_start(project, extra, tmp / f"start-{i}.log", sources.get(name))
        for app in apps:
            if time.monotonic() - began > opts.cap:
                print(f"  time cap reached: {app} not measured", file=sys.stderr)
                break
            results[app] = measure_app(runner, app, starts, project, opts.rounds, concs)
            print(f"  measured {app} ({time.monotonic() - began:.0f} s)", file=sys.stderr, flush=True)
    finally:
        runner.close()
        for proc, _port in starts.values():
            bench.stop(proc)
        for log in tmp.glob("start-*.log"):
            access_lines += sum(1 for line in log.read_text().splitlines() if re.search(r" GET /api/\S+ \d{3} ", line))
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"server tree pinned to CPU {sorted(SERVER_CPUS)}, load generator to CPU {sorted(LOAD_CPUS)}; "
          f"{opts.rounds} interleaved rounds of {opts.seconds:g} s slices per server and concurrency; "
          f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{'app':8} {'server':20} {'conc':>4} {'req/s':>8} {'CPU µs/req':>10} {'p50 ms':>8} {'p99 ms':>8}")
    for app, rows in results.items():
        for (name, conns), r in rows.items():
            flag = "*" if r["gen_cpu"] > 0.9 else " "
            print(f"{app:8} {name:20} {conns:4d} {r['rps']:8.0f}{flag}{r['cpu_us']:10.0f} {r['p50']:8.3f} {r['p99']:8.3f}")
    hi, lo = max(concs), min(concs)
    print("\nratios against the best native server of each app (goal: >= 0.80x; added p50 <= 0.1 ms)")
    print(f"{'app':8} {'variant':16} {'best native (CPU at c=' + str(hi) + ')':28} {'CPU eff.':>8} {'req/s c=' + str(hi):>11} "
          f"{'+p50 c=' + str(lo):>10}")
    for app, rows in results.items():
        natives = list(APPS[app][1])
        best_cpu = min(natives, key=lambda n: rows[(n, hi)]["cpu_us"])
        best_rps = max(rows[(n, hi)]["rps"] for n in natives)
        best_p50 = min(rows[(n, lo)]["p50"] for n in natives)
        for name in variants:
            cpu = rows[(best_cpu, hi)]["cpu_us"] / rows[(name, hi)]["cpu_us"]
            print(f"{app:8} {name:16} {best_cpu + ' ' + format(rows[(best_cpu, hi)]['cpu_us'], '.0f') + ' µs':28} "
                  f"{cpu:7.2f}x {rows[(name, hi)]['rps'] / best_rps:10.2f}x {rows[(name, lo)]['p50'] - best_p50:+9.3f}")
    if sources:
        print("\nfnserve start against the baseline source, same run (CPU: baseline µs / fnserve start µs)")
        for app, rows in results.items():
            for conns in concs:
                base, new = rows[("baseline", conns)], rows[("fnserve start", conns)]
                print(f"{app:8} c={conns:<3} CPU {base['cpu_us']:5.0f} -> {new['cpu_us']:5.0f} µs/req "
                      f"({base['cpu_us'] / new['cpu_us']:.2f}x)  req/s {base['rps']:6.0f} -> {new['rps']:6.0f}  "
                      f"p50 {base['p50']:.3f} -> {new['p50']:.3f} ms")
    for app, rows in results.items():
        for (name, conns), r in rows.items():
            if r["errors"]:
                print(f"  WARNING {app} {name} c={conns}: non-200 answers or errors {r['errors']}")
    print(f"(fnserve start wrote {access_lines} access log lines; '*': load generator above 90 % of its CPU; "
          f"total {time.monotonic() - began:.0f} s)")


if __name__ == "__main__":
    os.environ.setdefault("NO_COLOR", "1")
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        loadgen_main()
    else:
        main()
