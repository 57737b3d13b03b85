"""Limits that hold (SPEC §9, issue 6 item 3), end to end through uvicorn + httpx: maxDuration →
504 within 2 s, memory over the limit → 502 (cgroup where writable, else RLIMIT_AS + RSS polling),
crashes and segfaults of one function never fail another function's requests."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from ipc_support import run
from test_supervisor_support import SYNC_APP, function, limits, make_project, serving, target, wait_dead

from fnserve.supervisor import Supervisor, ZygoteLauncher, detect_memory_limiter
from fnserve.supervisor.limits import CgroupV1Memory, CgroupV2Memory, RlimitMemory

A, B = "api/a.py", "api/b.py"


def test_max_duration_answers_504_within_2s_and_retries_the_other_request(tmp_path):
    root = make_project(tmp_path, {A: SYNC_APP})

    async def main():
        sup = Supervisor([target(root, A, limits(max_duration=1.0, max_instances=2))], policy="autoscale")
        async with sup, serving(sup, {A: function(root, A)}) as client:
            assert (await client.get("/a/warm")).status_code == 200
            pid = int(sup.status()[A]["instances"][0]["pid"])
            began = time.monotonic()
            slow = asyncio.ensure_future(client.get("/a/sleep?10"))
            await asyncio.sleep(0.7)
            other = asyncio.ensure_future(client.get("/a/sleep?0.5"))  # same instance (concurrency 16)
            r = await slow
            assert r.status_code == 504 and time.monotonic() - began < 2.0
            assert "maxDuration of 1 s" in r.json()["error"]["message"]
            r2 = await other  # its instance was killed under it before it answered: retried elsewhere
            assert r2.status_code == 200 and int(r2.headers["x-pid"]) != pid
            assert await wait_dead(pid)
            assert (await client.get("/a/next")).status_code == 200

    run(main())


@pytest.mark.parametrize("backend,launcher", [("auto", "spawn"), ("rlimit", "spawn"), ("auto", "zygote")])
def test_memory_over_the_limit_gives_502_and_the_next_request_works(tmp_path, backend, launcher, caplog):
    root = make_project(tmp_path, {A: SYNC_APP})
    caplog.set_level(logging.INFO, logger="fnserve")

    async def main():
        sup = Supervisor([target(root, A, limits(memory=256))], policy="autoscale", memory_limiter=backend,
                         launcher=ZygoteLauncher() if launcher == "zygote" else None)
        async with sup, serving(sup, {A: function(root, A)}) as client:
            assert (await client.get("/a/warm")).status_code == 200
            pid = int(sup.status()[A]["instances"][0]["pid"])
            began = time.monotonic()
            r = await client.get("/a/alloc?2048")
            assert r.status_code == 502, r.text
            assert "memory limit of 256 MB" in r.json()["error"]["message"]
            assert time.monotonic() - began < 5.0
            assert await wait_dead(pid)
            r = await client.get("/a/after")
            assert r.status_code == 200 and int(r.headers["x-pid"]) != pid
            if sup.memory.limiter.name == "cgroup1":  # the instance sits in a cgroup limited to 256 MB
                line = next(x for x in open(f"/proc/{r.headers['x-pid']}/cgroup").read().splitlines()
                            if x.split(":")[1] == "memory")
                folder = sup.memory.limiter.base.parent / line.split(":", 2)[2].rsplit("/", 2)[-2] / line.rsplit("/", 1)[-1]
                assert (folder / "memory.limit_in_bytes").read_text().strip() == str(256 << 20)
            r = await client.get("/a/alloc?2048")  # again: a forked instance from a standby is limited too
            assert r.status_code == 502, r.text
            assert (await client.get("/a/after")).status_code == 200
            return sup.memory.limiter.name

    name = run(main())
    if backend == "rlimit":
        assert name == "rlimit"
    assert any("memory limit of 256 MB" in rec.getMessage() and "MB" in rec.getMessage() for rec in caplog.records)


def test_crash_and_segfault_never_fail_another_functions_requests(tmp_path):
    root = make_project(tmp_path, {A: SYNC_APP, B: SYNC_APP})

    async def main():
        targets = [target(root, A, limits()), target(root, B, limits(max_instances=2))]
        sup = Supervisor(targets, policy="autoscale")
        async with sup, serving(sup, {A: function(root, A), B: function(root, B)}) as client:
            stop = asyncio.Event()
            codes: list[int] = []

            async def load():
                while not stop.is_set():
                    codes.append((await client.get("/b/sleep?0.01")).status_code)

            clients = [asyncio.ensure_future(load()) for _ in range(8)]
            crashes = []
            for path in ("/a/exit", "/a/segv", "/a/exit", "/a/segv"):
                crashes.append((await client.get(path)).status_code)
                assert (await client.get("/a/ok")).status_code == 200
            stop.set()
            await asyncio.wait_for(asyncio.gather(*clients), 10)
            assert crashes == [502, 502, 502, 502]
            assert len(codes) > 20 and set(codes) == {200}

    run(main())


def test_heartbeat_watchdog_kills_a_wedged_event_loop(tmp_path):
    wedged = '''
import os, time
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/wedge":
        time.sleep(30)  # blocks the worker's event loop: no heartbeat
    await send({"type": "http.response.start", "status": 200, "headers": [(b"x-pid", str(os.getpid()).encode())]})
    await send({"type": "http.response.body", "body": b"ok"})
'''
    root = make_project(tmp_path, {A: wedged})

    async def main():
        sup = Supervisor([target(root, A, limits())], policy="autoscale", heartbeat=0.2, heartbeat_timeout=1.0)
        async with sup, serving(sup, {A: function(root, A)}) as client:
            pid = int((await client.get("/a/x")).headers["x-pid"])
            began = time.monotonic()
            r = await client.get("/a/wedge")
            assert r.status_code == 502 and time.monotonic() - began < 4.0
            assert await wait_dead(pid)
            assert (await client.get("/a/x")).status_code == 200

    run(main())


def test_a_cpu_bound_sync_handler_keeps_beating(tmp_path):
    root = make_project(tmp_path, {A: SYNC_APP})

    async def main():
        sup = Supervisor([target(root, A, limits())], policy="autoscale", heartbeat=0.2, heartbeat_timeout=1.0)
        async with sup, serving(sup, {A: function(root, A)}) as client:
            r = await client.get("/a/spin?2.5")  # 2.5 s of CPU in a thread, past the 1 s watchdog
            assert r.status_code == 200

    run(main())


def test_memory_limiter_detection_and_options(tmp_path):
    rl = detect_memory_limiter("rlimit")
    assert isinstance(rl, RlimitMemory) and rl.options("k", 256)["rlimit_as"] >= 512 * 1024 * 1024
    auto = detect_memory_limiter("auto")
    try:
        if isinstance(auto, (CgroupV1Memory, CgroupV2Memory)):
            opts = auto.options("probe", 128)
            procs = opts["cgroup"]
            assert procs.endswith("cgroup.procs") and (auto.base / "probe" / auto.limit_file).read_text().strip() == str(128 << 20)
            auto.release("probe")
            assert not (auto.base / "probe").exists()
        else:
            assert isinstance(auto, RlimitMemory)
    finally:
        auto.close()
    # a cgroup tree that cannot be written falls back to rlimit
    assert isinstance(detect_memory_limiter("cgroup1", root=tmp_path / "nothing"), RlimitMemory)


def test_cgroup_v2_backend_on_a_fake_tree(tmp_path):
    """The v2 code path (no v2 memory controller on this machine): probe, per-instance leaf with
    memory.max and swap off, spare adoption, OOM and peak read back, cleanup."""
    from fnserve.supervisor.limits import _probe_v2

    own = tmp_path / "user.slice" / "me"
    own.mkdir(parents=True)
    (own / "cgroup.controllers").write_text("cpu memory pids\n")
    (own / "cgroup.subtree_control").write_text("")
    limiter = _probe_v2({"": "/user.slice/me"}, tmp_path)
    assert isinstance(limiter, CgroupV2Memory)
    opts = limiter.options("inst1", 256)
    leaf = limiter.base / "inst1"
    assert opts == {"cgroup": str(leaf / "cgroup.procs")}
    assert (leaf / "memory.max").read_text() == str(256 << 20)
    assert (limiter.base / "cgroup.subtree_control").read_text() == "+memory"
    (leaf / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    (leaf / "memory.peak").write_text(str(300 << 20))
    assert limiter.oom_killed("inst1") and limiter.peak_mb("inst1") == 300
    spare = limiter.spare()
    assert spare and limiter.adopt(spare, "inst2", 128)
    assert (limiter.base / "spare-1" / "memory.max").read_text() == str(128 << 20)
    for folder in (leaf, limiter.base / "spare-1"):
        for f in folder.iterdir():  # a real cgroupfs has no removable files; the fake one does
            f.unlink()
    (limiter.base / "cgroup.subtree_control").unlink()
    limiter.close()
    assert not limiter.base.exists()
