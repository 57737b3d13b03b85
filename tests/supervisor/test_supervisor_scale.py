"""Costs flat in the number of functions (issue 14 item 3) and the memory limit over an instance's
process group (issue 10 item 7), over real processes behind uvicorn on 127.0.0.1:0 + httpx.

- a cold start and readiness walk no other function (``Supervisor.status()`` is not called; the
  maintenance tick steps only the functions that have instances);
- with a cgroup the kernel holds the limit and nothing is polled; without one (``rlimit``) a child
  the function forked counts against its instance's limit: the instance and the child die (502).
"""

from __future__ import annotations

import asyncio
import os
import time

import pytest
from ipc_support import run
from test_supervisor_support import SYNC_APP, function, limits, make_project, serving, target, wait_dead

from fnserve.server.admin import AdminApp
from fnserve.server.metrics import Metrics
from fnserve.server.observe import ObservedSupervisor
from fnserve.supervisor import Supervisor, ZygoteLauncher

A = "api/a.py"

# A WSGI function whose /fork starts a child (in the worker's process group) that allocates
# ``query`` MB and holds it, while the worker itself stays small and waits.
FORKING_APP = '''
import os, time

def app(environ, start_response):
    if environ["PATH_INFO"] == "/fork":
        child = os.fork()
        if child == 0:
            blocks = []
            for _ in range(int(environ["QUERY_STRING"]) // 32):
                blocks.append(b"x" * (32 << 20))
                time.sleep(0.01)
            time.sleep(20)
            os._exit(0)
        time.sleep(10)
    start_response("200 OK", [("content-type", "text/plain"), ("x-pid", str(os.getpid())),
                              ("x-pgid", str(os.getpgid(0)))])
    return [b"ok"]
'''


def group_members(pgid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat", "rb") as f:
                    stat = f.read()
                if int(stat[stat.rindex(b")") + 2:].split()[2]) == pgid and stat[stat.rindex(b")") + 2:][:1] != b"Z":
                    out.append(int(name))
            except (OSError, ValueError, IndexError):
                pass
    return out


@pytest.mark.parametrize("launcher", ["spawn", "zygote"])
def test_a_forked_child_counts_against_the_instance_memory_limit_without_cgroup(tmp_path, launcher):
    root = make_project(tmp_path, {A: FORKING_APP})

    async def main() -> None:
        sup = Supervisor([target(root, A, limits(memory=128))], policy="autoscale", memory_limiter="rlimit",
                         launcher=ZygoteLauncher() if launcher == "zygote" else None)
        async with sup, serving(sup, {A: function(root, A)}) as client:
            r = await client.get("/a/warm")
            assert r.status_code == 200
            pid = int(r.headers["x-pid"])
            assert int(r.headers["x-pgid"]) == pid  # each instance leads its own process group
            inst = sup.pools.pools[A].instances[0]
            assert sup.memory.polled.get(inst) == pid  # no cgroup: its group is polled
            began = time.monotonic()
            r = await client.get("/a/fork?512")  # the child goes to 512 MB; the worker stays ~20 MB
            assert r.status_code == 502, r.text
            assert "memory limit of 128 MB" in r.json()["error"]["message"]
            assert time.monotonic() - began < 5.0
            assert await wait_dead(pid)
            for _ in range(100):  # the child was killed with its instance
                if not group_members(pid):
                    break
                await asyncio.sleep(0.05)
            assert group_members(pid) == []
            await asyncio.wait_for(asyncio.shield(inst.exited), 5)
            await asyncio.sleep(0)  # its exit callbacks (one releases its polling) run
            assert inst not in sup.memory.polled
            r = await client.get("/a/after")
            assert r.status_code == 200 and int(r.headers["x-pid"]) != pid

    run(main())


def test_with_a_cgroup_the_kernel_holds_the_limit_and_nothing_is_polled(tmp_path):
    root = make_project(tmp_path, {A: SYNC_APP})

    async def main() -> str:
        sup = Supervisor([target(root, A, limits(memory=256))], policy="autoscale", memory_limiter="auto")
        async with sup, serving(sup, {A: function(root, A)}) as client:
            assert (await client.get("/a/warm")).status_code == 200
            inst = sup.pools.pools[A].instances[0]
            if sup.memory.limiter.name.startswith("cgroup"):
                assert inst not in sup.memory.polled and not sup.memory.polled
            else:  # no writable cgroup here: polled
                assert inst in sup.memory.polled
            r = await client.get("/a/alloc?1024")
            assert r.status_code == 502, r.text
            assert (await client.get("/a/after")).status_code == 200
            return sup.memory.limiter.name

    run(main())


def test_a_cold_start_and_readiness_walk_no_other_function(tmp_path):
    """300 functions known, one hit: its cold start is counted without ``Supervisor.status()``,
    readiness reads only failed functions, the maintenance tick steps only the hit function."""
    files = {f"api/f{i:03d}.py": SYNC_APP for i in range(300)}
    files[A] = SYNC_APP
    files["api/broken.py"] = "raise RuntimeError('database unreachable')\n"
    root = make_project(tmp_path, files)
    targets = [target(root, rel, limits(idle_timeout=0.5)) for rel in files]

    async def main() -> None:
        sup = Supervisor(targets, policy="autoscale", tick=0.05)
        metrics = Metrics()
        observed = ObservedSupervisor(sup, metrics)
        walks: list[int] = []
        stepped: list[str] = []
        real_status, real_step = sup.status, sup.pools.step

        def status():
            walks.append(1)
            return real_status()

        def step(pool, extra=0):
            stepped.append(pool.target.id)
            real_step(pool, extra)

        sup.status, sup.pools.step = status, step
        admin = AdminApp(lambda: "ready", metrics, sup.status, failed=sup.failed_loads)
        functions = {A: function(root, A), "api/broken.py": function(root, "api/broken.py")}
        async with sup, serving(observed, functions) as client:
            assert (await client.get("/a/x")).status_code == 200
            assert metrics.cold_starts == {A: 1} and walks == []
            assert (await client.get("/broken/x")).status_code == 500
            assert set(sup.failed_loads()) == {"api/broken.py"}
            messages: list[dict] = []

            async def receive() -> dict:
                return {"type": "http.request", "body": b""}

            async def send(message: dict) -> None:
                messages.append(message)

            await admin({"type": "http", "method": "GET", "path": "/_fnserve/ready", "query_string": b"",
                         "headers": []}, receive, send)
            assert messages[0]["status"] == 503 and b"api/broken.py" in messages[1]["body"]
            assert walks == []  # readiness did not call status()
            stepped.clear()
            await asyncio.sleep(0.3)  # a few ticks with A's instance idle, then scaled to zero
            assert set(stepped) <= {A, "api/broken.py"}
            for _ in range(100):
                if not sup.pools.pools[A].instances:
                    break
                await asyncio.sleep(0.05)
            assert not sup.pools.pools[A].instances  # idle_timeout 0.5 s: stopped by a due step
            await asyncio.sleep(0.2)
            assert A not in {p.target.id for p in sup.pools.ticking}  # nothing left to step for A
            assert metrics.render(sup.status(), True).count("fnserve_cold_starts_total{") == 1
            assert walks == [1]  # only the scrape walked

    run(main())


def test_a_shorter_idle_timeout_from_a_reload_applies_to_running_instances(tmp_path):
    """The tick steps only pools with a step due; ``update`` with new limits makes the pool due
    at once, so a shorter ``idle_timeout`` stops an idle instance without waiting for the old one."""
    root = make_project(tmp_path, {A: SYNC_APP})

    async def main() -> None:
        sup = Supervisor([target(root, A, limits(idle_timeout=600.0))], policy="autoscale", tick=0.05)
        async with sup, serving(sup, {A: function(root, A)}) as client:
            assert (await client.get("/a/x")).status_code == 200
            await asyncio.sleep(0.3)
            pool = sup.pools.pools[A]
            assert pool.instances and pool.due > asyncio.get_running_loop().time() + 500  # due in ~600 s
            await sup.update([target(root, A, limits(idle_timeout=0.2))])
            for _ in range(100):
                if not pool.instances:
                    break
                await asyncio.sleep(0.05)
            assert not pool.instances

    run(main())
