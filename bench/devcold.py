"""``fnserve dev`` cold starts, reloads and memory: this tree against a baseline git ref (issue 14
item 4, "dev as fast as start").

Two ``fnserve dev`` servers run at once on one generated project each (``--no-install``: the
functions use this interpreter's packages): the BASELINE is ``git archive <ref> src`` (default
``main``) run with ``PYTHONPATH`` pointing at it, CURRENT is this tree's ``src``. The project
holds ``--copies`` copies each of the showcase's handler (``api/h_<i>.py``), Flask
(``api/fl_<i>.py``) and FastAPI (``api/fa_<i>.py``) functions, and ``--many`` more handler
functions (``api/many/m<i>.py``). Every measurement alternates the two servers (A B B A), so the
machine's load hits both alike:

1. cold start: the first request of each copy (copy 0 warms the server up and is left out), wall
   time at the client, median and range per kind;
2. reload-to-ready: a save of ``h_0.py`` / ``fa_0.py`` (a new body) until the first response with
   it, ``--reloads`` rounds;
3. memory of the server's process tree after one request to each of the ``--many`` handlers:
   RSS summed (counts shared pages once per process) and PSS summed (shared pages split between
   their users: what the tree really holds), MB; then again after CURRENT's instances went idle
   (``dev_idle_timeout`` = ``--idle`` s; the baseline never stops them).

Ratios are CURRENT / BASELINE (lower is better for time and memory). 127.0.0.1 only; every
process started is stopped at the end (its process group).

    .venv/bin/python bench/devcold.py [--ref main] [--copies 6] [--many 100] [--reloads 4] [--idle 60]
                                      [--kinds handler,flask,fastapi]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
SHOWCASE = ROOT / "examples" / "showcase"
URL_RE = re.compile(r"fnserve dev: (http://[0-9.]+:[0-9]+)")
KINDS = {"handler": ("h", "hello.py", ""), "flask": ("fl", "flask_app.py", ""), "fastapi": ("fa", "fastapi_app.py", "/items")}


def make_project(where: Path, copies: int, many: int, kinds: tuple[str, ...] = tuple(KINDS)) -> Path:
    """The generated project (module docstring) under ``where``, with copies of ``kinds`` only."""
    api = where / "api"
    (api / "many").mkdir(parents=True)
    shutil.copytree(SHOWCASE / "api" / "_lib", api / "_lib")
    for prefix, source, _ in (KINDS[k] for k in kinds):
        text = (SHOWCASE / "api" / source).read_text()
        for i in range(copies):  # the apps' routes carry their file's path
            (api / f"{prefix}_{i}.py").write_text(re.sub(r"/api/(flask|fastapi)_app", f"/api/{prefix}_{i}", text))
    hello = (SHOWCASE / "api" / "hello.py").read_text()
    for i in range(many):
        (api / "many" / f"m{i}.py").write_text(hello)
    return where


class Dev:
    """One ``fnserve dev`` subprocess (own process group) with ``src`` first on ``PYTHONPATH``."""

    def __init__(self, name: str, src: Path, project: Path, env: dict[str, str]) -> None:
        self.name, self.project = name, project
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fnserve", "dev", str(project), "--port", "0", "--no-install"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
            env={**os.environ, "PYTHONPATH": str(src), **env})
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 60
        self.url = ""
        while not self.url and time.monotonic() < deadline:
            for line in list(self.lines):
                if m := URL_RE.search(line):
                    self.url = m.group(1)
            if self.proc.poll() is not None:
                raise SystemExit(f"{name}: fnserve dev exited:\n" + "\n".join(self.lines[-30:]))
            time.sleep(0.05)
        if not self.url:
            raise SystemExit(f"{name}: no URL printed")
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def get(self, path: str) -> tuple[float, httpx.Response]:
        began = time.perf_counter()
        r = self.client.get(path)
        return (time.perf_counter() - began) * 1000, r

    def tree(self) -> list[int]:
        """The server's pid and every descendant's (spawned workers, zygotes and their forks)."""
        children: dict[int, list[int]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(entry))
        out, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            out.append(pid)
            todo.extend(children.get(pid, ()))
        return out

    def memory(self) -> tuple[int, float, float]:
        """``(processes, RSS MB summed, PSS MB summed)`` of the tree."""
        n, rss, pss = 0, 0.0, 0.0
        for pid in self.tree():
            try:
                text = Path(f"/proc/{pid}/smaps_rollup").read_text()
            except OSError:
                continue
            n += 1
            for line in text.splitlines():
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) / 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) / 1024
        return n, rss, pss

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def pairs(servers: list[Dev], rounds: int) -> list[list[Dev]]:
    """A B, B A, A B, ...: the order of the two servers in each round."""
    return [servers if i % 2 == 0 else servers[::-1] for i in range(rounds)]


def fmt(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.1f} ({min(xs):.0f}..{max(xs):.0f})" if xs else "-"


def reload_ms(dev: Dev, rel: str, path: str, n: int) -> float:
    """Save ``rel`` with a new body (a ``"v": "reloaded<n>"`` key in its JSON answer); ms until a
    response has it."""
    file = dev.project / rel
    text = re.sub(r'"v": "reloaded\d{4}", ', "", file.read_text())
    marker = f"reloaded{n:04d}"
    new = re.sub(r'\{"(message|items)": ', lambda m: f'{{"v": "{marker}", "{m.group(1)}": ', text, count=1)
    began = time.perf_counter()
    file.write_text(new)
    deadline = began + 30
    while time.perf_counter() < deadline:
        try:
            r = dev.client.get(path)
            if marker in r.text:
                return (time.perf_counter() - began) * 1000
        except httpx.HTTPError:
            pass
        time.sleep(0.005)
    raise SystemExit(f"{dev.name}: {rel} did not reload within 30 s:\n" + "\n".join(dev.lines[-20:]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref", default="main", help="baseline git ref (default main)")
    parser.add_argument("--copies", type=int, default=6, help="functions per kind for the cold starts (default 6)")
    parser.add_argument("--many", type=int, default=100, help="handler functions for the memory figure (default 100)")
    parser.add_argument("--reloads", type=int, default=4, help="saves per measured function (default 4)")
    parser.add_argument("--idle", type=float, default=60.0,
                        help="CURRENT's dev_idle_timeout, s (default 60: longer than the phases before the idle one)")
    parser.add_argument("--kinds", default=",".join(KINDS),
                        help="function kinds in the project, comma-separated (default: all; 'handler' alone shows "
                             "what a handler-only project's instances cost)")
    args = parser.parse_args()
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown or "handler" not in kinds:
        parser.error(f"--kinds: choose among {', '.join(KINDS)} (handler included: the reloads save it)")
    tmp = Path(tempfile.mkdtemp(prefix="fnserve-devcold-"))
    servers: list[Dev] = []
    try:
        base_src = tmp / "baseline"
        base_src.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.ref, "src"], check=True, capture_output=True)
        subprocess.run(["tar", "-x", "-C", str(base_src)], input=archive.stdout, check=True)
        commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", args.ref], capture_output=True,
                                text=True).stdout.strip()
        servers = [
            Dev(f"baseline ({args.ref} {commit})", base_src / "src", make_project(tmp / "p-base", args.copies, args.many, kinds), {}),
            Dev("current", ROOT / "src", make_project(tmp / "p-cur", args.copies, args.many, kinds),
                {"FNSERVE_DEV_IDLE_TIMEOUT": str(args.idle)}),
        ]
        print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; "
              f"{args.copies - 1} cold starts per kind, {args.reloads} reloads, {args.many} handler functions\n")
        for dev in servers:  # warm-up: supervisor start, zygote, the first of each kind
            for prefix, _, suffix in (KINDS[k] for k in kinds):
                dev.get(f"/api/{prefix}_0{suffix}")
        time.sleep(3.0)  # the zygote's background imports of every function's preloads

        print("cold start: the first request of a function, ms at the client, median (min..max)")
        print(f"{'kind':<10} {servers[0].name:>26} {servers[1].name:>26} {'ratio':>7}")
        for kind in kinds:
            prefix, _, suffix = KINDS[kind]
            times: dict[str, list[float]] = {d.name: [] for d in servers}
            for i, order in enumerate(pairs(servers, args.copies - 1), start=1):
                for dev in order:
                    ms, r = dev.get(f"/api/{prefix}_{i}{suffix}")
                    assert r.status_code == 200, (dev.name, r.status_code, r.text[:200])
                    times[dev.name].append(ms)
                    time.sleep(0.1)
            a, b = times[servers[0].name], times[servers[1].name]
            print(f"{kind:<10} {fmt(a):>26} {fmt(b):>26} {statistics.median(b) / statistics.median(a):>6.2f}x")

        print("\nreload: save → first response with the new body, ms, median (min..max)")
        for kind in [k for k in ("handler", "fastapi") if k in kinds]:
            prefix, _, suffix = KINDS[kind]
            times = {d.name: [] for d in servers}
            for n, order in enumerate(pairs(servers, 2 * args.reloads)):
                dev = order[0]  # each round saves on one server; the order alternates
                times[dev.name].append(reload_ms(dev, f"api/{prefix}_0.py", f"/api/{prefix}_0{suffix}", n))
                time.sleep(0.3)
            a, b = times[servers[0].name], times[servers[1].name]
            print(f"{kind:<10} {fmt(a):>26} {fmt(b):>26} {statistics.median(b) / statistics.median(a):>6.2f}x")

        print(f"\nmemory after one request to each of {args.many} handler functions (every process of the tree)")
        began = {d.name: 0.0 for d in servers}
        for i in range(args.many):
            for dev in (servers if i % 2 == 0 else servers[::-1]):
                ms, r = dev.get(f"/api/many/m{i}")
                assert r.status_code == 200, (dev.name, r.status_code)
                began[dev.name] += ms
        time.sleep(1.0)
        mem = {d.name: d.memory() for d in servers}
        for dev in servers:
            n, rss, pss = mem[dev.name]
            print(f"  {dev.name:<26} {n:>4} processes  RSS {rss:8.0f} MB  PSS {pss:7.0f} MB "
                  f"({pss / args.many:.1f} MB per function); {args.many} cold starts took {began[dev.name] / 1000:.1f} s")
        a, b = mem[servers[0].name][2], mem[servers[1].name][2]
        print(f"  PSS ratio {b / a:.2f}x")
        if mem[servers[1].name][0] < args.many:
            print(f"  (fewer processes than functions: some went idle past --idle {args.idle:g} s already; raise it)")
        time.sleep(args.idle + 3.0)
        print(f"after {args.idle + 3:.0f} s idle (current: dev_idle_timeout {args.idle:g} s)")
        for dev in servers:
            n, rss, pss = dev.memory()
            print(f"  {dev.name:<26} {n:>4} processes  RSS {rss:8.0f} MB  PSS {pss:7.0f} MB")
        ms, r = servers[1].get("/api/many/m0")
        print(f"  current: the next request to an idle-stopped function: {r.status_code} in {ms:.1f} ms")
    finally:
        for dev in servers:
            dev.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
