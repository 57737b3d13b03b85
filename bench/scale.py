"""Costs as the number of functions grows: 10, 100, 1,000 functions (issue 14 item 3).

A generated project of N handler-class functions (``api/f0000.py`` ...: ``BaseHTTPRequestHandler``
answering ``ok``, stdlib only) in a temporary folder, served by ``fnserve dev`` and ``fnserve
start`` on 127.0.0.1 (port 0), each in its own process group, killed at the end. Per command and N:

- ``launch``: ms from starting the command to the first 200 (``/api/f0000``);
- ``cold q1`` / ``cold q4``: median ms of one request to each other function once, in order
  (each a cold start), over the first and the last quarter of them; ``q4/q1``: the goal is ≤ 1.2
  (a cold start must not cost more because many functions ran before); ``front CPU q1`` / ``q4``:
  CPU ms of the front process per hit over the same quarters (clock-tick resolution summed over
  the quarter: steadier than wall time on a busy machine);
- ``tree MB hot``: memory of the server's process tree (sum of ``Pss`` of ``/proc/<pid>/smaps_rollup``:
  pages shared with a zygote counted once) right after the hits, with ``procs`` processes;
- ``idle CPU %``: CPU time (user + system) of the tree over ``--idle-window`` s with every instance
  warm and no request (percent of one core);
- ``tree MB idle``: the same memory after ``idle_timeout`` (``FNSERVE_IDLE_TIMEOUT`` and
  ``FNSERVE_DEV_IDLE_TIMEOUT``, set to a value longer than the hits: instances scale to zero), with
  ``procs left``.

``dev`` keeps one instance per function until ``dev_idle_timeout`` (forked from a zygote, ~6 MB
each): it runs only for N ≤ ``--dev-max`` (default 1000). Usage: ``python bench/scale.py [--n 10,100,1000] [--commands dev,start]``
(about 4 min with the defaults).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

PY = sys.executable
HANDLER = '''from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("content-type", "text/plain")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
'''
TICK = os.sysconf("SC_CLK_TCK")


def make_project(n: int) -> Path:
    root = Path(tempfile.mkdtemp(prefix=f"fnserve-scale-{n}-"))
    (root / "api").mkdir()
    for i in range(n):
        (root / "api" / f"f{i:04d}.py").write_text(HANDLER)
    return root


class Server:
    """``fnserve <command> <root> --port 0`` in its own process group; ``port`` from its output."""

    def __init__(self, command: str, root: Path, idle_timeout: float) -> None:
        env = {**os.environ, "NO_COLOR": "1", "FNSERVE_IDLE_TIMEOUT": str(idle_timeout),
               "FNSERVE_DEV_IDLE_TIMEOUT": str(idle_timeout)}
        self.began = time.perf_counter()
        self.proc = subprocess.Popen(
            [PY, "-m", "fnserve", command, str(root), "--host", "127.0.0.1", "--port", "0", "--no-install",
             "--no-dashboard"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True, env=env,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 120
        self.port = 0
        pattern = re.compile(rf"fnserve {command}: http://127\.0\.0\.1:(\d+)")
        while not self.port and time.monotonic() < deadline and self.proc.poll() is None:
            for line in list(self.lines):
                m = pattern.search(line)
                if m:
                    self.port = int(m.group(1))
            time.sleep(0.005)
        if not self.port:
            self.stop()
            raise RuntimeError(f"fnserve {command} printed no URL:\n" + "\n".join(self.lines[-30:]))

    def _pump(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            if len(self.lines) < 5000:
                self.lines.append(line.rstrip("\n"))

    def stop(self) -> None:
        """SIGTERM the group, SIGKILL what is left (every process we started)."""
        pids = tree(self.proc.pid)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
                break
            except subprocess.TimeoutExpired:
                continue
        for pid in pids:  # instances in their own sessions (setsid) are not in our group
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


class Client:
    """One keep-alive HTTP/1.1 connection (GET only, Content-Length bodies)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None

    def get(self, path: str) -> int:
        for attempt in range(2):
            if self.sock is None:
                self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=60)
                self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            try:
                self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
                return self._read()
            except (OSError, ValueError):
                self.close()
                if attempt:
                    raise
        return 0

    def _read(self) -> int:
        assert self.sock is not None
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ValueError("closed")
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        length = int(m.group(1)) if m else 0
        while len(body) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ValueError("closed")
            body += chunk
        if re.search(rb"(?i)\r\nconnection:\s*close", head):
            self.close()
        return status

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def tree(root: int) -> list[int]:
    """``root`` and its descendants (by ``/proc/<pid>/stat`` ppid)."""
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
                parent[int(entry.name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
            except (OSError, ValueError):
                pass
    kids: dict[int, list[int]] = {}
    for pid, ppid in parent.items():
        kids.setdefault(ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def pss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total / 1024


def cpu_s(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            fields = stat[stat.rindex(b")") + 2:].split()
            out[pid] = (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, ValueError, IndexError):
            pass
    return out


def idle_cpu(root: int, seconds: float) -> float:
    """Percent of one core the tree of ``root`` used over ``seconds`` (processes alive at both ends)."""
    pids = tree(root)
    before = cpu_s(pids)
    began = time.monotonic()
    time.sleep(seconds)
    after = cpu_s(tree(root))
    elapsed = time.monotonic() - began
    used = sum(after[p] - before[p] for p in after if p in before)
    return 100.0 * used / elapsed


def quartiles(times: list[float]) -> tuple[float, float]:
    q = max(1, len(times) // 4)
    return statistics.median(times[:q]), statistics.median(times[-q:])


def measure(command: str, n: int, idle_window: float) -> dict[str, float | int | str]:
    root = make_project(n)
    idle_timeout = max(10.0, 0.12 * n + 10.0)  # longer than the hits (≤ ~110 ms each on a busy machine) + the idle window
    server = None
    try:
        server = Server(command, root, idle_timeout)
        client = Client(server.port)
        while True:
            try:
                status = client.get("/api/f0000")
            except (OSError, ValueError):
                status = 0
            if status == 200 or time.perf_counter() - server.began > 120:
                break
            time.sleep(0.002)
        launch_ms = (time.perf_counter() - server.began) * 1000
        if status != 200:
            raise RuntimeError(f"/api/f0000 answered {status}")
        times, bad = [], 0
        front = server.proc.pid
        q = max(1, (n - 1) // 4)
        marks: dict[int, float] = {}  # hit index → the front's CPU s before it
        for i in range(1, n):
            if i in (1, 1 + q, n - q):
                marks[i] = cpu_s([front]).get(front, 0.0)
            began = time.perf_counter()
            if client.get(f"/api/f{i:04d}") != 200:
                bad += 1
            times.append((time.perf_counter() - began) * 1000)
        end_cpu = cpu_s([front]).get(front, 0.0)
        cpu_q1 = (marks.get(1 + q, end_cpu) - marks.get(1, 0.0)) * 1000 / q
        cpu_q4 = (end_cpu - marks.get(n - q, end_cpu)) * 1000 / q
        hot_pids = tree(server.proc.pid)
        hot_mb = pss_mb(hot_pids)
        cpu = idle_cpu(server.proc.pid, idle_window)
        deadline = time.monotonic() + idle_timeout + 15.0
        baseline = 3 if command == "start" else 1  # front + zygote (+ its standby); dev: the front
        while time.monotonic() < deadline and len(tree(server.proc.pid)) > baseline:
            time.sleep(0.5)
        idle_pids = tree(server.proc.pid)
        idle_mb = pss_mb(idle_pids)
        q1, q4 = quartiles(times) if times else (0.0, 0.0)
        client.close()
        return {"command": command, "n": n, "launch": launch_ms, "q1": q1, "q4": q4, "ratio": q4 / q1 if q1 else 0.0,
                "cpu_q1": cpu_q1, "cpu_q4": cpu_q4,
                "hot_mb": hot_mb, "procs": len(hot_pids), "cpu": cpu, "idle_mb": idle_mb, "left": len(idle_pids),
                "failed": bad}
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", default="10,100,1000", help="numbers of functions, comma-separated")
    parser.add_argument("--commands", default="dev,start", help="dev, start or both")
    parser.add_argument("--dev-max", type=int, default=1000, help="largest N run with dev (an instance per function)")
    parser.add_argument("--idle-window", type=float, default=3.0, help="s of idle CPU measurement")
    args = parser.parse_args()
    sizes = [int(x) for x in args.n.split(",") if x]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; handler-class functions; ms, MB (Pss), % of a core")
    header = (f"{'command':<7} {'N':>5} {'launch':>8} {'cold q1':>8} {'cold q4':>8} {'q4/q1':>6} {'front CPU q1':>12} "
              f"{'q4':>5} {'tree MB hot':>11} "
              f"{'procs':>6} {'idle CPU %':>10} {'tree MB idle':>12} {'procs left':>10} {'failed':>6}")
    print(header, flush=True)
    rows = []
    for command in args.commands.split(","):
        for n in sizes:
            if command == "dev" and n > args.dev_max:
                print(f"{command:<7} {n:>5}  skipped (> --dev-max {args.dev_max})", flush=True)
                continue
            r = measure(command, n, args.idle_window)
            rows.append(r)
            print(f"{command:<7} {n:>5} {r['launch']:>8.0f} {r['q1']:>8.1f} {r['q4']:>8.1f} {r['ratio']:>6.2f} "
                  f"{r['cpu_q1']:>12.1f} {r['cpu_q4']:>5.1f} "
                  f"{r['hot_mb']:>11.0f} {r['procs']:>6} {r['cpu']:>10.1f} {r['idle_mb']:>12.0f} {r['left']:>10} "
                  f"{r['failed']:>6}", flush=True)
    flat = [(float(r["ratio"]), str(r["command"]), int(r["n"])) for r in rows if int(r["n"]) >= 100]
    if flat:
        ratio, command, n = max(flat)
        print(f"\ngoal q4/q1 ≤ 1.2 (N ≥ 100): worst {ratio:.2f} ({command}, N={n}): {'met' if ratio <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
