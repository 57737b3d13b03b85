"""Cold starts from a warm zygote vs a fresh interpreter (issue 6, SPEC §9).

For the showcase's FastAPI and Flask functions (``examples/showcase``), measures in one run:

- ``zygote``: time from request to complete response when NO instance runs but the zygote is warm
  (``Supervisor.serve`` + ``upstream.forward`` with an in-memory client: fork, worker main,
  import of the user module, connect, READY, first request), median of ``--runs``. The first
  cold start is listed apart: its instance reports the modules its load imported lazily (FastAPI
  imports ``pydantic.v1`` when it analyses a route), the zygote imports them, later starts skip them;
- ``spawn``: the same with ``SpawnLauncher`` (a fresh interpreter per instance), for reference;
- ``import``: ``python -I -c "import sys; sys.path.insert(0, root); import api.x"`` wall time
  (same interpreter, cwd = project root, sys.path as the worker sets it), median;
- ``private``: the forked instance's private memory (``Private_Clean + Private_Dirty`` of
  ``/proc/<pid>/smaps_rollup``, MB) after its first request.

Goals: FastAPI zygote cold start ≤ 10 ms and ≥ 30× faster than the fresh interpreter; a forked
FastAPI instance ≤ 10 MB private. Usage: ``python bench/coldstart.py [--runs 10]`` (< 2 min).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time
from pathlib import Path

from fnserve.config import FunctionLimits
from fnserve.project.types import Entry, EntryKind, Function, Layout
from fnserve.server.upstream import forward
from fnserve.supervisor import SpawnLauncher, Supervisor, WorkerTarget, ZygoteLauncher
from fnserve.supervisor.limits import private_mb, rss_mb

SHOWCASE = Path(__file__).resolve().parent.parent / "examples" / "showcase"
# function file → the path of one request (the showcase's own FastAPI and Flask functions)
FUNCTIONS = {
    "api/fastapi_app.py": "/api/fastapi_app/items",
    "api/flask_app.py": "/api/flask_app",
}


class Client:
    def __init__(self) -> None:
        self.status = 0
        self.body = b""
        self.sent = False

    async def receive(self) -> dict:
        if self.sent:
            await asyncio.sleep(3600)
        self.sent = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(self, message: dict) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        else:
            self.body += message.get("body", b"")


def scope(path: str) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
            "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
            "fnserve.route_params": {}}


def target(root: Path, rel: str, memory: int | None = None) -> WorkerTarget:
    fn = Function(id=rel, path=root / rel, module=rel[:-3].replace("/", "."), layout=Layout.VERCEL,
                  entry=Entry(EntryKind.APP, "app", 1), import_roots=(root,))
    # idle_timeout 0: the instance stops right after its request, so every request is a cold start
    return WorkerTarget.from_function(fn, root, limits=FunctionLimits(concurrency=100, max_instances=1, idle_timeout=0.0,
                                                              memory=memory))


async def cold_starts(root: Path, rel: str, launcher, runs: int,
                      memory: int | None = None) -> tuple[list[float], float | None, float | None]:
    """Request→response times (ms) with no instance running (the first one included); private MB
    of the second instance (the first after learning)."""
    t = target(root, rel, memory)
    times, private, zygote_rss = [], None, None
    async with Supervisor([t], policy="autoscale", launcher=launcher, tick=0.02, heartbeat=0.1) as sup:
        await launcher.prepare(t, sup.starter.prepare_options())
        path = FUNCTIONS[rel]
        for i in range(runs + 1):
            if i == 1:
                await asyncio.sleep(0.3)  # the first instance's report reaches the zygote
            for _ in range(500):  # wait for scale to zero
                if not sup.status()[rel]["instances"] and not sup.pools.live:
                    break
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.15)  # idle machine, warm zygote (its standby child forked)
            client = Client()
            began = time.perf_counter()
            await sup.serve(rel, scope(path), client.receive, client.send, forward)
            times.append((time.perf_counter() - began) * 1000)
            assert client.status == 200, (client.status, client.body)
            if i == 1:
                inst = sup.pools.pools[rel].instances[0] if sup.pools.pools[rel].instances else None
                if inst is not None and inst.pid:
                    private = private_mb(inst.pid)
        for z in getattr(launcher, "zygotes", {}).values():
            zygote_rss = rss_mb(z.pid)
    return times, private, zygote_rss


def import_times(root: Path, rel: str, runs: int) -> list[float]:
    module = rel[:-3].replace("/", ".")
    code = f"import sys; sys.path.insert(0, {str(root)!r}); import {module}"
    out = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-I", "-c", code], cwd=root, check=True)
        out.append((time.perf_counter() - began) * 1000)
    return out


async def main(runs: int, memory: int | None) -> None:
    root = SHOWCASE
    limit = f"memory limit {memory} MB (the instance joins its cgroup / sets RLIMIT_AS)" if memory else "no memory limit"
    print(f"python {sys.version.split()[0]}, project {root}, {runs} cold starts each (median ms; min..max), {limit}\n")
    print(f"{'function':<20} {'zygote 1st':>10} {'zygote':>20} {'spawn':>22} {'python -c import':>22} "
          f"{'ratio':>6} {'private MB':>10}")

    def fmt(xs: list[float]) -> str:
        return f"{statistics.median(xs):.1f} ({min(xs):.1f}..{max(xs):.1f})"

    for rel in FUNCTIONS:
        zyg, private, zrss = await cold_starts(root, rel, ZygoteLauncher(), runs, memory)
        first, zyg = zyg[0], zyg[1:]
        spawn, _, _ = await cold_starts(root, rel, SpawnLauncher(), max(3, runs // 3))
        imp = import_times(root, rel, max(3, runs // 2))
        mz, mi = statistics.median(zyg), statistics.median(imp)
        print(f"{rel:<20} {first:>10.1f} {fmt(zyg):>20} {fmt(spawn):>22} {fmt(imp):>22} {mi / mz:>5.0f}x "
              f"{private if private is None else round(private, 1)!s:>10}")
        if rel.startswith("api/fastapi"):
            print(f"{'':<20} goals: zygote ≤ 10 ms: {'yes' if mz <= 10 else 'NO'}; ≥ 30× faster than the fresh "
                  f"interpreter: {'yes' if mi / mz >= 30 else 'NO'}; private ≤ 10 MB: "
                  f"{'yes' if private is not None and private <= 10 else 'NO'}; zygote RSS {zrss or 0:.0f} MB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="cold starts per function (default 10)")
    parser.add_argument("--memory", type=int, default=None, help="memory limit (MB) of the zygote's instances")
    args = parser.parse_args()
    try:  # the front server runs on uvloop (uvicorn's default where installed): so does the bench
        import uvloop

        uvloop.run(main(args.runs, args.memory))
    except ImportError:
        asyncio.run(main(args.runs, args.memory))
