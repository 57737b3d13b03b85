"""Supervisor life cycle with real worker processes: lazy start, crash, load errors, restart,
update, start timeout, heartbeat watchdog, graceful shutdown."""

from __future__ import annotations

import asyncio

import pytest
from ipc_support import APP, BROKEN, SLOW_IMPORT, make_project, make_target, pid_alive, request, run

from fnserve.errors import FunctionLoadFailed, WorkerCrashed, WorkerError, WorkerStartTimeout
from fnserve.supervisor import Supervisor

FID = "api/a.py"


async def _wait_dead(pid: int, timeout: float = 5.0) -> bool:
    for _ in range(int(timeout / 0.02)):
        if not pid_alive(pid):
            return True
        await asyncio.sleep(0.02)
    return False


def test_lazy_start_crash_gives_worker_crashed_then_recovers(tmp_path):
    root = make_project(tmp_path, {FID: APP, "api/b.py": APP})

    async def main():
        async with Supervisor([make_target(root, FID), make_target(root, "api/b.py")]) as sup:
            assert sup.spawn_count(FID) == 0  # nothing started before the first request
            first = await request(sup, FID, "/x")
            other = await request(sup, "api/b.py", "/x")
            pid = int(first.headers[b"x-pid"])
            slow = asyncio.ensure_future(request(sup, FID, "/slow", query=b"2"))
            await asyncio.sleep(0.1)
            with pytest.raises(WorkerCrashed) as info:
                await request(sup, FID, "/crash")
            assert not info.value.response_started
            with pytest.raises(WorkerCrashed):  # the other in-flight request on that worker
                await asyncio.wait_for(slow, 5)
            again = await request(sup, FID, "/x")
            assert again.status == 200 and int(again.headers[b"x-pid"]) != pid
            assert sup.spawn_count(FID) == 2
            # the other function was never touched
            assert (await request(sup, "api/b.py", "/x")).headers[b"x-pid"] == other.headers[b"x-pid"]
            assert sup.spawn_count("api/b.py") == 1

    run(main())


def test_kill_ends_the_instance_now_and_the_next_request_gets_a_new_one(tmp_path):
    root = make_project(tmp_path, {FID: APP})

    async def main():
        async with Supervisor([make_target(root, FID)]) as sup:
            pid = int((await request(sup, FID, "/x")).headers[b"x-pid"])
            slow = asyncio.ensure_future(request(sup, FID, "/slow", query=b"30"))
            await asyncio.sleep(0.1)
            assert sup.kill(await sup.acquire(FID), "maxDuration exceeded (test)")
            with pytest.raises(WorkerCrashed):
                await asyncio.wait_for(slow, 5)
            assert await _wait_dead(pid)
            assert int((await request(sup, FID, "/x")).headers[b"x-pid"]) != pid

    run(main())


def test_load_error_is_remembered_not_respawned_until_restart(tmp_path):
    root = make_project(tmp_path, {FID: BROKEN})

    async def main():
        async with Supervisor([make_target(root, FID)]) as sup:
            for _ in range(3):
                with pytest.raises(FunctionLoadFailed) as info:
                    await request(sup, FID, "/x")
                assert "broken on purpose" in info.value.traceback
                assert info.value.load_error.file
            assert sup.spawn_count(FID) == 1
            assert sup.load_error(FID) is not None
            (root / FID).write_text(APP)
            results = await sup.restart([FID])
            assert results[FID].error is None and results[FID].ready_ms is not None
            assert (await request(sup, FID, "/x")).status == 200
            assert sup.spawn_count(FID) == 2

    run(main())


def test_restart_while_requests_in_flight_has_zero_failures(tmp_path):
    root = make_project(tmp_path, {FID: APP})

    async def main():
        async with Supervisor([make_target(root, FID)]) as sup:
            first = await request(sup, FID, "/x")
            old_pid = int(first.headers[b"x-pid"])
            failures: list[BaseException] = []
            pids: set[int] = set()
            stop = asyncio.Event()

            async def client():
                while not stop.is_set():
                    try:
                        c = await request(sup, FID, "/slow", query=b"0.05")
                        assert c.status == 200
                        pids.add(int(c.headers[b"x-pid"]))
                    except BaseException as exc:  # noqa: B902 - count every failure
                        failures.append(exc)

            clients = [asyncio.ensure_future(client()) for _ in range(10)]
            await asyncio.sleep(0.3)
            await sup.restart([FID])
            await asyncio.sleep(0.3)
            await sup.restart([FID])
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*clients), 10)
            assert failures == []
            assert len(pids) == 3 and old_pid in pids
            assert await _wait_dead(old_pid)
            assert sup.spawn_count(FID) == 3

    run(main())


def test_exit_before_ready_is_a_load_error_with_the_output(tmp_path):
    root = make_project(tmp_path, {FID: "import os, sys\nsys.stderr.write('native crash at import\\n')\nos._exit(7)\n"})

    async def main():
        async with Supervisor([make_target(root, FID)]) as sup:
            with pytest.raises(FunctionLoadFailed) as info:
                await request(sup, FID, "/x")
            assert "exited with status 7" in str(info.value)
            assert "native crash at import" in info.value.traceback
            with pytest.raises(FunctionLoadFailed):
                await request(sup, FID, "/x")
            assert sup.spawn_count(FID) == 1

    run(main())


def test_shutdown_and_removal_during_a_slow_start_leave_no_process(tmp_path):
    root = make_project(tmp_path, {FID: SLOW_IMPORT, "api/b.py": SLOW_IMPORT})

    async def main():
        sup = Supervisor([make_target(root, FID), make_target(root, "api/b.py")])
        waiting = asyncio.ensure_future(sup.acquire(FID))
        removed = asyncio.ensure_future(sup.acquire("api/b.py"))
        await asyncio.sleep(0.3)
        pids = [inst.pid for inst in sup.pools.live]
        assert len(pids) == 2
        await sup.update([make_target(root, FID)])  # b removed while it starts
        with pytest.raises(WorkerError):
            await asyncio.wait_for(removed, 5)
        await sup.shutdown()
        with pytest.raises(WorkerError):
            await asyncio.wait_for(waiting, 5)
        for pid in pids:
            assert await _wait_dead(pid)

    run(main())


def test_update_adds_removes_and_restarts_changed_targets(tmp_path):
    root = make_project(tmp_path, {FID: APP, "api/b.py": APP})

    async def main():
        async with Supervisor([make_target(root, FID)]) as sup:
            with pytest.raises(WorkerError):
                await sup.acquire("api/b.py")
            await sup.update([make_target(root, FID), make_target(root, "api/b.py")])
            a = int((await request(sup, FID, "/x")).headers[b"x-pid"])
            b = int((await request(sup, "api/b.py", "/x")).headers[b"x-pid"])
            restarted = await sup.update([make_target(root, FID, env={"NEW": "1"})])  # b removed, a changed
            assert restarted == {FID}
            assert await _wait_dead(b) and await _wait_dead(a)
            assert (await request(sup, FID, "/env", query=b"NEW")).body == b"1"
            with pytest.raises(WorkerError):
                await sup.acquire("api/b.py")

    run(main())


def test_start_timeout_kills_the_slow_worker(tmp_path):
    root = make_project(tmp_path, {FID: SLOW_IMPORT})

    async def main():
        async with Supervisor([make_target(root, FID)], start_timeout=0.5) as sup:
            with pytest.raises(WorkerStartTimeout):
                await request(sup, FID, "/x")
            await asyncio.sleep(0.2)
            assert sup.status()[FID]["instances"] == []
            assert not sup.pools.live  # the process was killed and reaped

    run(main())


def test_heartbeat_watchdog_kills_a_wedged_worker(tmp_path):
    root = make_project(tmp_path, {FID: APP})

    async def main():
        async with Supervisor([make_target(root, FID)], heartbeat=0.1, heartbeat_timeout=0.6) as sup:
            await request(sup, FID, "/x")
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(WorkerCrashed):
                await request(sup, FID, "/block", query=b"20")
            assert loop.time() - t0 < 3.0
            assert (await request(sup, FID, "/x")).status == 200

    run(main())


def test_shutdown_finishes_in_flight_requests_and_runs_lifespan_shutdown(tmp_path):
    root = make_project(tmp_path, {FID: APP})
    marker = tmp_path / "shutdown-ran"

    async def main():
        sup = Supervisor([make_target(root, FID, env={"SHUTDOWN_MARKER": str(marker)})])
        pid = int((await request(sup, FID, "/x")).headers[b"x-pid"])
        inflight = [asyncio.ensure_future(request(sup, FID, "/slow", query=b"0.5")) for _ in range(5)]
        await asyncio.sleep(0.1)
        await sup.shutdown()
        results = await asyncio.gather(*inflight, return_exceptions=True)
        assert [getattr(r, "status", r) for r in results] == [200] * 5
        assert not pid_alive(pid)
        with pytest.raises(WorkerError):
            await sup.acquire(FID)

    run(main())
    assert marker.read_text() == "shutdown"


def test_worker_exits_when_the_front_connection_is_lost(tmp_path):
    root = make_project(tmp_path, {FID: APP})

    async def main():
        async with Supervisor([make_target(root, FID)]) as sup:
            pid = int((await request(sup, FID, "/x")).headers[b"x-pid"])
            conn = await sup.acquire(FID)
            conn.abort()  # as if the front server died
            assert await _wait_dead(pid)

    run(main())
