"""Instances and scaling (SPEC §9, issue 6 item 1): the policies driven one step at a time, then
real workers behind uvicorn: a burst scales up to max_instances and queues the rest, a full queue
answers 503 with Retry-After, idle instances stop (scale to zero), min_instances are kept."""

from __future__ import annotations

import asyncio
import math

from ipc_support import run
from test_supervisor_support import SYNC_APP, function, limits, make_project, serving, target, wait_dead

from fnserve.config import FunctionLimits
from fnserve.supervisor import AutoscalePolicy, PoolView, ScaleDecision, SingleInstancePolicy, Supervisor
from fnserve.supervisor.scaling import InstanceView, resolve_limits

A = "api/a.py"
LIM = FunctionLimits(concurrency=4, min_instances=0, max_instances=3, idle_timeout=1.0, queue_size=10)


def view(ready=(), starting=0, queued=0, lim=LIM, kind_known=True) -> PoolView:
    return PoolView("api/a.py", lim, tuple(ready), starting, queued, kind_known)


def test_autoscale_step_scales_up_to_max_and_down_to_min():
    policy = AutoscalePolicy()
    assert policy.step(view()) == ScaleDecision()  # nothing to do, nothing running
    assert policy.step(view(queued=1)) == ScaleDecision(start=1)
    assert policy.step(view(queued=9, kind_known=False)) == ScaleDecision(start=1)  # concurrency unknown yet
    assert policy.step(view(queued=9)) == ScaleDecision(start=3)  # ceil(9 / 4)
    assert policy.step(view(queued=50)) == ScaleDecision(start=3)  # clamped to max_instances
    busy = [InstanceView(1, 4, None), InstanceView(2, 4, None)]
    assert policy.step(view(busy, starting=1, queued=3)) == ScaleDecision()  # 3rd on its way
    idle = [InstanceView(1, 0, 5.0), InstanceView(2, 0, 0.5), InstanceView(3, 2, None)]
    assert policy.step(view(idle)) == ScaleDecision(stop=(1,))  # idle long enough: only #1
    lim = FunctionLimits(concurrency=4, min_instances=2, max_instances=3, idle_timeout=1.0, queue_size=10)
    all_idle = [InstanceView(1, 0, 5.0), InstanceView(2, 0, 9.0), InstanceView(3, 0, 2.0)]
    assert policy.step(view(all_idle, lim=lim)) == ScaleDecision(stop=(2,))  # longest idle, down to min 2
    assert policy.step(view(lim=lim, kind_known=False)) == ScaleDecision(start=1)  # min: one until kind is known
    assert policy.step(view(lim=lim, kind_known=True)).start == 2


def test_idle_passed_connections_are_no_demand_for_another_instance():
    """A slot held by an idle passed connection (``reclaimable``) is given to a queued request at
    once (packet R), so it does not count as demand: no cold start for what one instance can take."""
    policy = AutoscalePolicy()
    full_idle = [InstanceView(1, 4, None, reclaimable=4)]
    assert policy.step(view(full_idle, queued=1)) == ScaleDecision()
    assert policy.step(view([InstanceView(1, 4, None, reclaimable=2)], queued=2)) == ScaleDecision()
    assert policy.step(view([InstanceView(1, 4, None, reclaimable=2)], queued=3)) == ScaleDecision(start=1)
    assert policy.step(view([InstanceView(1, 4, None)], queued=1)) == ScaleDecision(start=1)  # all busy
    # an instance holding only idle connections is not idle: it is not stopped under them
    assert policy.step(view([InstanceView(1, 2, None, reclaimable=2)])) == ScaleDecision()


def test_single_policy_is_dev_one_instance_unbounded():
    policy = SingleInstancePolicy()
    lim = policy.limits(FunctionLimits(concurrency=4, max_instances=5, queue_size=1, max_duration=3.0, memory=128))
    assert (lim.max_instances, lim.max_duration, lim.memory) == (1, 3.0, 128)
    assert lim.queue_size > 10**6 and lim.concurrency > 10**6 and math.isinf(lim.idle_timeout)
    assert policy.step(view(queued=100, lim=lim)) == ScaleDecision(start=1)
    assert policy.step(view([InstanceView(1, 0, 1e9)], lim=lim)) == ScaleDecision()


def test_limits_from_function_limits_or_a_callable_of_the_kind():
    fl = limits(concurrency=7, max_duration=2.5, memory=300)
    got = resolve_limits(fl, None)
    assert (got.concurrency, got.max_duration, got.memory, got.queue_size) == (7, 2.5, 300, 100)
    by_kind = resolve_limits(lambda kind: limits(concurrency=100 if kind == "asgi" else 16), "asgi")
    assert by_kind.concurrency == 100
    assert resolve_limits(None, "asgi") is None


def test_burst_of_50_scales_up_to_max_instances_and_queues_the_rest(tmp_path):
    root = make_project(tmp_path, {A: SYNC_APP})

    async def main():
        lim = limits(concurrency=4, max_instances=3, queue_size=50)
        sup = Supervisor([target(root, A, lim)], policy="autoscale")
        async with sup, serving(sup, {A: function(root, A)}) as client:
            assert (await client.get("/a/warm")).status_code == 200  # kind known: concurrency 4
            peak = {"queued": 0, "leases": 0}

            async def watch():
                while True:
                    st = sup.status()[A]
                    peak["queued"] = max(peak["queued"], st["queued"])
                    peak["leases"] = max(peak["leases"], sum(i["leases"] for i in st["instances"]))
                    await asyncio.sleep(0.01)

            watcher = asyncio.ensure_future(watch())
            rs = await asyncio.gather(*(client.get("/a/sleep?0.3") for _ in range(50)))
            watcher.cancel()
            assert [r.status_code for r in rs] == [200] * 50
            assert len({r.headers["x-pid"] for r in rs}) == 3
            assert len(sup.status()[A]["instances"]) == 3
            assert peak["leases"] <= 12 and peak["queued"] >= 30  # 3 × 4 in flight, the rest waited

    run(main())


def test_a_full_queue_answers_503_with_retry_after(tmp_path):
    root = make_project(tmp_path, {A: SYNC_APP})

    async def main():
        lim = limits(concurrency=2, max_instances=1, queue_size=3)
        sup = Supervisor([target(root, A, lim)], policy="autoscale")
        async with sup, serving(sup, {A: function(root, A)}) as client:
            assert (await client.get("/a/warm")).status_code == 200
            rs = await asyncio.gather(*(client.get("/a/sleep?0.5") for _ in range(8)))
            codes = sorted(r.status_code for r in rs)
            assert codes == [200] * 5 + [503] * 3  # 2 running + 3 queued
            over = [r for r in rs if r.status_code == 503]
            assert all(r.headers["retry-after"] == "1" for r in over)
            assert "overloaded" in over[0].json()["error"]["message"]
            assert (await client.get("/a/after")).status_code == 200

    run(main())


def test_scale_to_zero_after_idle_timeout_then_serve_again(tmp_path):
    root = make_project(tmp_path, {A: SYNC_APP})

    async def main():
        sup = Supervisor([target(root, A, limits(idle_timeout=1.0))], policy="autoscale", tick=0.1)
        async with sup, serving(sup, {A: function(root, A)}) as client:
            pid = int((await client.get("/a/x")).headers["x-pid"])
            await asyncio.sleep(0.5)
            assert sup.status()[A]["instances"]  # not idle long enough yet
            assert await wait_dead(pid, 3.0)
            assert sup.status()[A]["instances"] == []
            r = await client.get("/a/again")
            assert r.status_code == 200 and int(r.headers["x-pid"]) != pid
            assert sup.status()[A]["cold_starts"] == 2

    run(main())


def test_min_instances_start_without_a_request_and_stay_when_idle(tmp_path):
    root = make_project(tmp_path, {A: SYNC_APP})

    async def main():
        sup = Supervisor([target(root, A, limits(min_instances=2, max_instances=3, idle_timeout=0.2))],
                         policy="autoscale", tick=0.05)
        async with sup:
            for _ in range(200):
                if len([i for i in sup.status()[A]["instances"] if i["state"] == "ready"]) == 2:
                    break
                await asyncio.sleep(0.05)
            pids = {i["pid"] for i in sup.status()[A]["instances"]}
            assert len(pids) == 2
            await asyncio.sleep(0.6)
            assert {i["pid"] for i in sup.status()[A]["instances"]} == pids

    run(main())


def test_serve_reports_each_lease_cold_then_warm(tmp_path):
    from ipc_support import Client, http_scope

    from fnserve.server.upstream import forward

    root = make_project(tmp_path, {A: SYNC_APP})

    async def main():
        async with Supervisor([target(root, A, limits())], policy="autoscale") as sup:
            seen = []
            for _ in range(2):
                client = Client()
                await sup.serve(A, http_scope("/x"), client.receive, client.send, forward, on_lease=seen.append)
                assert client.status == 200
            assert [lease.cold for lease in seen] == [True, False]
            assert seen[0].instance.pid == seen[1].instance.pid == int(client.headers[b"x-pid"])
            assert seen[0].waited_ms > 0 and seen[1].waited_ms == 0
            assert sup.status()[A]["instances"][0]["leases"] == 0  # released

    run(main())
