"""``fnserve dev`` against the same apps served natively (issue 4 acceptance, "bench/dev.py").

(1) Throughput with ``--conns`` keep-alive connections for ``--seconds`` s, and latency p50/p99
    with one connection (unloaded: the added latency of the front → worker hop), both measured
    in slices alternating native and dev (A B B A) while both servers run, for the
    FastAPI, Flask and handler functions of ``examples/showcase``, through ``fnserve dev`` and
    natively: FastAPI on bare uvicorn (uvloop + httptools), Flask on gunicorn sync (``-w 2``),
    the handler class on ``ThreadingHTTPServer`` (HTTP/1.1 keep-alive, TCP_NODELAY). Printed as
    ratios (goal: ≥ 0.8× throughput, ≤ 0.3 ms added p50).
(2) Reload-to-ready after a save of ``api/hello.py`` (a handler): from the write to the first
    response with the new body, and the "ready in N ms" of the reload line (goal ≤ 300 ms).
(3) Memory: RSS of the front server and of each worker.

Each save writes a body of a new length (``fnserve dev`` also drops a saved module's ``.pyc``,
whose validity Python checks by whole-second mtime and size only).

The load generator is this file run with ``--loadgen`` in its own process: raw keep-alive
sockets on uvloop. 127.0.0.1 only; every process started is killed at the end; total < 3 min.

    .venv/bin/python bench/dev.py [--seconds 3] [--conns 8]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHOWCASE = ROOT / "examples" / "showcase"
PY = sys.executable
APPS = {  # name: (path, how to serve it natively)
    "fastapi": ("/api/fastapi_app/items", "uvicorn"),
    "flask": ("/api/flask_app", "gunicorn sync -w 2"),
    "handler": ("/api/hello", "ThreadingHTTPServer"),
}
HANDLER_SERVER = """
import sys
from http.server import ThreadingHTTPServer
sys.path.insert(0, ".")
from api.hello import handler
ThreadingHTTPServer.request_queue_size = 128  # the default 5 drops SYNs under 8 connections
class H(handler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""


# ------------------------------------------------------------------------------ load generator
async def _open(host: str, port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(host, port)
    writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return reader, writer


async def _conn(host: str, port: int, request: bytes, until: float, warm: float, lat: list[float],
                errors: list[bytes]) -> int:
    """One client: keep-alive requests in a loop; reconnects (inside the timed request) when the
    server closes after each response (gunicorn's sync worker has no keep-alive)."""
    reader, writer = await _open(host, port)
    count = 0
    try:
        while True:
            t0 = time.perf_counter()
            if t0 >= until:
                return count
            if reader.at_eof() or writer.is_closing():
                writer.close()
                reader, writer = await _open(host, port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if head[9:12] != b"200":
                errors.append(head[9:12])
            m = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            if m:
                await reader.readexactly(int(m.group(1)))
            else:  # chunked
                while True:
                    size = int((await reader.readline()).strip(), 16)
                    await reader.readexactly(size + 2)
                    if size == 0:
                        break
            if re.search(rb"(?i)\r\nconnection: *close", head):
                writer.close()
                reader, writer = await _open(host, port)
            t1 = time.perf_counter()
            if t0 >= warm:
                lat.append(t1 - t0)
                count += 1
    finally:
        writer.close()


async def _loadgen(host: str, port: int, path: str, conns: int, seconds: float) -> dict:
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    start = time.perf_counter()
    warm, until = start + 0.5, start + 0.5 + seconds
    lat: list[float] = []
    errors: list[bytes] = []
    counts = await asyncio.gather(*(_conn(host, port, request, until, warm, lat, errors) for _ in range(conns)))
    lat.sort()
    return {
        "rps": sum(counts) / seconds,
        "p50": lat[len(lat) // 2] * 1000 if lat else float("nan"),
        "p99": lat[int(len(lat) * 0.99)] * 1000 if lat else float("nan"),
        "errors": {code.decode(): errors.count(code) for code in set(errors)},
    }


def load(port: int, path: str, conns: int, seconds: float) -> dict:
    out = subprocess.run(
        [PY, __file__, "--loadgen", str(port), path, str(conns), str(seconds)],
        capture_output=True, text=True, timeout=seconds + 30,
    )
    if out.returncode:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout)


def interleaved(port_a: int, port_b: int, path: str, conns: int, seconds: float) -> tuple[dict, dict]:
    """Slices A B B A of ``seconds`` each; per side: mean rps, mean p50/p99, errors summed."""
    runs: dict[int, list[dict]] = {port_a: [], port_b: []}
    for port in (port_a, port_b, port_b, port_a):
        runs[port].append(load(port, path, conns, seconds))

    def merge(rs: list[dict]) -> dict:
        errors: dict[str, int] = {}
        for r in rs:
            for k, v in r["errors"].items():
                errors[k] = errors.get(k, 0) + v
        return {key: statistics.mean(r[key] for r in rs) for key in ("rps", "p50", "p99")} | {"errors": errors}

    return merge(runs[port_a]), merge(runs[port_b])


# ------------------------------------------------------------------------------ servers
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if s.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"nothing answered 200 on port {port}{path}")


def start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(5)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)


def native(name: str, port: int) -> subprocess.Popen:
    if name == "fastapi":
        return start([PY, "-m", "uvicorn", "api.fastapi_app:app", "--port", str(port), "--loop", "uvloop",
                      "--http", "httptools", "--no-access-log", "--log-level", "warning"], SHOWCASE)
    if name == "flask":
        return start([PY, "-m", "gunicorn", "-w", "2", "-k", "sync", "-b", f"127.0.0.1:{port}",
                      "--log-level", "warning", "api.flask_app:app"], SHOWCASE)
    return start([PY, "-c", HANDLER_SERVER, str(port)], SHOWCASE)


class Dev:
    """``fnserve dev`` on a copy of the showcase, its output collected."""

    def __init__(self, project: Path) -> None:
        self.proc = subprocess.Popen(
            [PY, "-m", "fnserve", "dev", str(project), "--port", "0", "--no-install"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "NO_COLOR": "1"},
        )
        self.lines: list[str] = []
        import threading

        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 60
        self.port = 0
        while not self.port and time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(r"fnserve dev: http://127\.0\.0\.1:(\d+)", line)
                if m:
                    self.port = int(m.group(1))
            time.sleep(0.05)
        if not self.port:
            raise RuntimeError("fnserve dev printed no URL:\n" + "\n".join(self.lines))

    def _pump(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def function_of(pid: int) -> str:
    """The function id in a worker's command line (its spec JSON has ``"id":"..."``)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return "?"
    m = re.search(r'"id":"([^"]+)"', cmd)
    return m.group(1) if m else "?"


def children(pid: int) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


# ------------------------------------------------------------------------------ main
def reload_to_ready(dev: Dev, project: Path, rounds: int = 3) -> list[tuple[float, float]]:
    """Save api/hello.py ``rounds`` times; (ms from write to new body, ms reported "ready in")."""
    results = []
    hello = project / "api" / "hello.py"
    original = hello.read_text()
    with socket.create_connection(("127.0.0.1", dev.port)) as s:
        f = s.makefile("rb")
        for i in range(rounds):
            marker = "v" + "+" * (i + 1)
            mark = len(dev.lines)
            t0 = time.perf_counter()
            hello.write_text(original.replace("greet(query", f"'{marker}' + greet(query"))
            body = b""
            while marker.encode() not in body and time.perf_counter() - t0 < 10:
                s.sendall(b"GET /api/hello HTTP/1.1\r\nHost: x\r\n\r\n")
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    head += f.readline()
                n = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
                body = f.read(n)
                if marker.encode() not in body:
                    time.sleep(0.002)
            elapsed = (time.perf_counter() - t0) * 1000
            ready = float("nan")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and ready != ready:
                for line in dev.lines[mark:]:
                    m = re.search(r"reload: .*api/hello\.py ready in (\d+) ms", line)
                    if m:
                        ready = float(m.group(1))
                time.sleep(0.02)
            results.append((elapsed, ready))
            time.sleep(0.3)
    hello.write_text(original)
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per throughput run")
    ap.add_argument("--conns", type=int, default=8, help="keep-alive connections for throughput")
    opts = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally below: stop fnserve dev
    tmp = Path(tempfile.mkdtemp(prefix="fnserve-bench-"))
    project = tmp / "showcase"
    shutil.copytree(SHOWCASE, project, ignore=shutil.ignore_patterns(".fnserve", "__pycache__"))
    rows = []
    dev = Dev(project)
    try:
        for name, (path, how) in APPS.items():
            wait_http(dev.port, path)
            port = free_port()
            proc = native(name, port)
            try:
                wait_http(port, path)
                # both servers up at once, slices interleaved A B B A: the shared machine's drift
                # hits both sides alike
                nat_t, dev_t = interleaved(port, dev.port, path, opts.conns, opts.seconds / 2)
                nat_l, dev_l = interleaved(port, dev.port, path, 1, opts.seconds / 4)
            finally:
                stop(proc)
            rows.append((name, how, nat_t, nat_l, dev_t, dev_l))
            print(f"  measured {name}: native {nat_t['rps']:.0f} rps, dev {dev_t['rps']:.0f} rps", file=sys.stderr, flush=True)
        front = rss_kb(dev.proc.pid)
        workers = [(pid, rss_kb(pid), function_of(pid)) for pid in children(dev.proc.pid)]
        reloads = reload_to_ready(dev, project)
    finally:
        stop(dev.proc)
        shutil.rmtree(tmp, ignore_errors=True)

    print(f"(1) throughput ({opts.conns} keep-alive connections, {opts.seconds:g} s) and latency (1 connection)")
    print(f"{'app':8} {'native server':22} {'native rps':>10} {'dev rps':>9} {'ratio':>6} "
          f"{'nat p50':>8} {'dev p50':>8} {'+p50 ms':>8} {'nat p99':>8} {'dev p99':>8}")
    for name, how, nt, nl, dt, dl in rows:
        print(f"{name:8} {how:22} {nt['rps']:10.0f} {dt['rps']:9.0f} {dt['rps'] / nt['rps']:5.2f}x "
              f"{nl['p50']:8.3f} {dl['p50']:8.3f} {dl['p50'] - nl['p50']:+8.3f} {nl['p99']:8.3f} {dl['p99']:8.3f}")
    for name, _how, *runs in rows:
        bad = {k: v for run in runs for k, v in run["errors"].items()}
        if bad:
            print(f"  WARNING {name}: non-200 answers {bad}")
    print("\n(2) reload-to-ready after saving api/hello.py (handler)")
    for i, (elapsed, ready) in enumerate(reloads, 1):
        print(f"  save {i}: new body served {elapsed:.0f} ms after the write; new instance ready in {ready:.0f} ms")
    print(f"  median: {statistics.median(e for e, _ in reloads):.0f} ms (goal <= 300 ms)")
    print("\n(3) memory (RSS)")
    print(f"  front server (pid {dev.proc.pid}): {front / 1024:.1f} MiB")
    for pid, kb, fid in workers:
        print(f"  worker of {fid} (pid {pid}): {kb / 1024:.1f} MiB")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        _, _, port_s, path_s, conns_s, secs_s = sys.argv
        try:
            import uvloop

            run = uvloop.run
        except ImportError:
            run = asyncio.run
        print(json.dumps(run(_loadgen("127.0.0.1", int(port_s), path_s, int(conns_s), float(secs_s)))))
    else:
        main()
