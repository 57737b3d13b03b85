"""Costs as the number of functions grows: 10, 100, 1,000 functions (issue 14 item 3).

A generated project of N handler-class functions (``api/f0000.py`` ...: ``BaseHTTPRequestHandler``
answering ``ok``, stdlib only) in a temporary folder, served by ``fnserve dev`` and ``fnserve
start`` on 127.0.0.1 (port 0), each in its own process group, killed at the end. Per command and N:

- ``launch``: ms from starting the command to the first 200 (``/api/f0000``);
- ``cold q1`` / ``cold q4``: median ms of one request to each other function once, in order
  (each a cold start), over the first and the last quarter of them; ``q4/q1``: the goal is ≤ 1.2
  (a cold start must not cost more because many functions ran before); ``front CPU q1`` / ``q4``:
  median CPU ms of the front process per hit over the same quarters (``/proc/<pid>/task/*/schedstat``,
  ns resolution);
- per cold start, first → last quarter (medians; figures that do not depend on the machine's load):
  the new instance's CPU ms and minor page faults right after its hit (its whole life so far: fork
  or standby, set-up, import, READY, the request), the zygote's CPU ms per hit, the ``ready in``
  and ``import + startup`` ms the server logs, and the load average at both ends;
- ``machine``: before each run with N ≥ 100 (``--warm-memory``, default N × 8 MB + 512 MB, at most half of MemAvailable; 0: off),
  the CPU µs per 4 KiB page of touching that much fresh memory, first and last quarter (then freed).
  On a VM whose host backs guest memory lazily the first touch of never-used guest pages is
  slower (measured here, 2026-12-04: 1.85 → ~10 µs/page past the ~5 GB used recently); an
  instance writes ~1,500 pages, so without this step the late cold starts of N = 1,000 measured
  the VM (q4/q1 2.4, instance CPU 8 → 21 ms with the same fault count), not fnserve
  (docs/ARCHITECTURE.md, flat costs);
- ``tree MB hot``: memory of the server's process tree (sum of ``Pss`` of ``/proc/<pid>/smaps_rollup``:
  pages shared with a zygote counted once) right after the hits, with ``procs`` processes;
- ``idle CPU %``: CPU time (user + system) of the tree over ``--idle-window`` s with every instance
  warm and no request (percent of one core);
- ``tree MB idle``: the same memory after ``idle_timeout`` (``FNSERVE_IDLE_TIMEOUT`` and
  ``FNSERVE_DEV_IDLE_TIMEOUT``, set to a value longer than the hits: instances scale to zero), with
  ``procs left``.

``dev`` keeps one instance per function until ``dev_idle_timeout`` (forked from a zygote, ~6 MB
each): it runs only for N ≤ ``--dev-max`` (default 1000). Usage: ``python bench/scale.py [--n 10,100,1000]
[--commands dev,start] [--no-idle] [--warm-memory MB|auto]`` (about 6 min with the defaults; ``--no-idle``
skips the idle CPU and scale-to-zero part: ~1.5 min for ``--n 1000 --commands start``).
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
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
            if len(self.lines) < 50000:
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


READY = re.compile(r"worker (\d+) ready in ([\d.]+) ms \(cold start, \w+; import \+ startup ([\d.]+) ms\)")


def ready_lines(lines: list[str]) -> list[tuple[int, float, float]]:
    """``(pid, ready_ms, startup_ms)`` of each cold start the server logged, in order
    (``supervisor.pools``: "worker <pid> ready in X ms (cold start, forked; import + startup Y ms)")."""
    return [(int(m.group(1)), float(m.group(2)), float(m.group(3))) for m in map(READY.search, lines) if m]


def sched_ms(pid: int, threads: bool = False) -> float:
    """On-CPU ms of ``pid`` (``/proc/<pid>/schedstat``, ns resolution; with ``threads`` summed over
    its threads), else clock ticks from ``/proc/<pid>/stat``; 0.0 when it is gone."""
    paths = [f"/proc/{pid}/schedstat"]
    if threads:
        try:
            paths = [f"/proc/{pid}/task/{t}/schedstat" for t in os.listdir(f"/proc/{pid}/task")]
        except OSError:
            return 0.0
    try:
        total = 0
        for path in paths:
            with open(path, "rb") as f:
                total += int(f.read().split()[0])
        return total / 1e6
    except (OSError, ValueError, IndexError):
        return cpu_s([pid]).get(pid, 0.0) * 1000


def minor_faults(pid: int) -> int:
    """Minor page faults of ``pid`` so far (``/proc/<pid>/stat`` minflt): copy-on-write copies of
    the zygote's pages and fresh pages, the work that grows with a machine's memory first-touch cost."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        return int(stat[stat.rindex(b")") + 2:].split()[7])
    except (OSError, ValueError, IndexError):
        return 0


def available_mb() -> int:
    """MemAvailable of /proc/meminfo in MB (0 when unknown): ``--warm-memory auto`` touches at most half."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def first_touch(mb: int, chunk_mb: int = 6) -> tuple[float, float]:
    """Touch ``mb`` MB of fresh anonymous memory in ``chunk_mb`` chunks (about an instance's private
    memory each), keeping it until the end, then free it. Returns the CPU µs per 4 KiB page over the
    first and the last quarter. Shows (and, as a side effect, removes for the run that follows) the
    first-touch cost of a VM whose host backs guest memory lazily: measured 1.85 µs/page, then
    ~10 µs/page past the memory used recently on this machine (a page fault of an instance costs
    the same, so late cold starts of a big run got slower there, not in fnserve's code)."""
    chunk = chunk_mb << 20
    count = max(4, mb // chunk_mb)
    keep: list[mmap.mmap] = []
    cost = []
    for _ in range(count):
        began = time.process_time()
        m = mmap.mmap(-1, chunk)
        buf = (ctypes.c_char * chunk).from_buffer(m)
        ctypes.memset(buf, 1, chunk)
        del buf  # an exported buffer would keep the map from closing
        cost.append((time.process_time() - began) * 1e6 / (chunk / 4096))
        keep.append(m)
    for m in keep:
        m.close()
    q = max(1, count // 4)
    return statistics.mean(cost[:q]), statistics.mean(cost[-q:])


def _zygote(front: int) -> int | None:
    for pid in tree(front):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if b"_fnserve_runtime.zygote" in f.read():
                    return pid
        except OSError:
            pass
    return None


def measure(command: str, n: int, idle_window: float, idle: bool = True) -> dict[str, float | int | str]:
    """One run of ``command`` over N functions (module docstring); the row's figures. ``idle``:
    also the idle CPU and the scale-to-zero part."""
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
        time.sleep(0.2)  # the zygote's first standby
        zygote = _zygote(front)
        seen = len(server.lines)
        load = [os.getloadavg()[0]]
        # per hit: front CPU ms, zygote CPU ms, the new instance's CPU ms and minor faults after its hit
        front_ms, zygote_ms, inst_ms, faults = [], [], [], []
        for i in range(1, n):
            f0 = sched_ms(front, threads=True)
            z0 = sched_ms(zygote) if zygote else 0.0
            began = time.perf_counter()
            if client.get(f"/api/f{i:04d}") != 200:
                bad += 1
            times.append((time.perf_counter() - began) * 1000)
            front_ms.append(sched_ms(front, threads=True) - f0)
            zygote_ms.append(sched_ms(zygote) - z0 if zygote else 0.0)
            pid = None
            for _ in range(100):  # the READY line is logged before the response; its pipe may lag
                found = ready_lines(server.lines[seen:])
                if found:
                    seen, pid = len(server.lines), found[-1][0]
                    break
                time.sleep(0.002)
            if pid is not None:
                inst_ms.append(sched_ms(pid))
                faults.append(minor_faults(pid))
            if i == n - 1 - (n - 1) // 4:
                load.append(os.getloadavg()[0])
        load.append(os.getloadavg()[0])
        hot_pids = tree(server.proc.pid)
        hot_mb = pss_mb(hot_pids)
        time.sleep(0.3)
        ready = ready_lines(server.lines)[1:]  # f0000's was the launch
        cpu, idle_mb, idle_pids = 0.0, 0.0, []
        if idle:
            cpu = idle_cpu(server.proc.pid, idle_window)
            deadline = time.monotonic() + idle_timeout + 15.0
            baseline = 3 if command == "start" else 1  # front + zygote (+ its standby); dev: the front
            while time.monotonic() < deadline and len(tree(server.proc.pid)) > baseline:
                time.sleep(0.5)
            idle_pids = tree(server.proc.pid)
            idle_mb = pss_mb(idle_pids)
        client.close()

        def quarts(values: list[float]) -> tuple[float, float]:
            return quartiles(values) if values else (0.0, 0.0)

        q1, q4 = quarts(times)
        row: dict[str, float | int | str] = {
            "command": command, "n": n, "launch": launch_ms, "q1": q1, "q4": q4, "ratio": q4 / q1 if q1 else 0.0,
            "hot_mb": hot_mb, "procs": len(hot_pids), "cpu": cpu, "idle_mb": idle_mb, "left": len(idle_pids),
            "failed": bad, "load_q1": load[0], "load_q4": load[-1], "cold_starts": len(ready)}
        for name, values in (("cpu", front_ms), ("zygote", zygote_ms), ("inst", inst_ms),
                             ("faults", [float(x) for x in faults]), ("ready", [r[1] for r in ready]),
                             ("startup", [r[2] for r in ready])):
            row[f"{name}_q1"], row[f"{name}_q4"] = quarts(values)
        return row
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
    parser.add_argument("--no-idle", action="store_true", help="skip the idle CPU / scale-to-zero part (faster)")
    parser.add_argument("--warm-memory", default="auto",
                        help="MB of fresh memory to touch (and free) before each run, reporting its first-touch cost: "
                             "'auto' = N x 8 MB + 512 MB for N >= 100 (at most half of MemAvailable), 0 = none (see first_touch)")
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
            warm = (min(8 * n + 512, available_mb() // 2) if n >= 100 else 0) if args.warm_memory == "auto" \
                else int(args.warm_memory)
            touch = first_touch(warm) if warm else None
            r = measure(command, n, args.idle_window, not args.no_idle)
            rows.append(r)
            print(f"{command:<7} {n:>5} {r['launch']:>8.0f} {r['q1']:>8.1f} {r['q4']:>8.1f} {r['ratio']:>6.2f} "
                  f"{r['cpu_q1']:>12.2f} {r['cpu_q4']:>5.2f} "
                  f"{r['hot_mb']:>11.0f} {r['procs']:>6} {r['cpu']:>10.1f} {r['idle_mb']:>12.0f} {r['left']:>10} "
                  f"{r['failed']:>6}", flush=True)
            print(f"{'':<13} per cold start, q1 → q4 (medians): instance CPU ms {r['inst_q1']:.2f} → {r['inst_q4']:.2f}, "
                  f"minor faults {r['faults_q1']:.0f} → {r['faults_q4']:.0f}, zygote CPU ms {r['zygote_q1']:.2f} → "
                  f"{r['zygote_q4']:.2f}, ready ms {r['ready_q1']:.1f} → {r['ready_q4']:.1f} (import + startup "
                  f"{r['startup_q1']:.1f} → {r['startup_q4']:.1f}); load average {r['load_q1']:.2f} → {r['load_q4']:.2f}",
                  flush=True)
            if touch:
                print(f"{'':<13} machine: first touch of {warm} MB fresh memory before the run: {touch[0]:.2f} µs/page "
                      f"(first quarter) → {touch[1]:.2f} (last)", flush=True)
    flat = [(float(r["ratio"]), str(r["command"]), int(r["n"])) for r in rows if int(r["n"]) >= 100]
    if flat:
        ratio, command, n = max(flat)
        print(f"\ngoal q4/q1 ≤ 1.2 (N ≥ 100): worst {ratio:.2f} ({command}, N={n}): {'met' if ratio <= 1.2 else 'NOT met'}")


if __name__ == "__main__":
    main()
