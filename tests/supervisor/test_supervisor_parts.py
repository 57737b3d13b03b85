"""The supervisor's parts alone (issue 12 item 4: ``Deadlines``, ``FunctionPool`` slots,
``Maintenance.step``) and its one limits path (item 3): ``policy="single"`` (``fnserve dev``)
enforces ``max_duration`` and ``memory`` exactly like ``"autoscale"`` (``fnserve start``), with
the same 504 / 502 messages, over a real loopback server."""

from __future__ import annotations

import asyncio
import math
import time
from types import SimpleNamespace
from typing import Any

import pytest
from ipc_support import run
from test_supervisor_support import SYNC_APP, function, limits, make_project, serving, target, wait_dead

from fnserve.config import FunctionLimits
from fnserve.config.effective import UNBOUNDED
from fnserve.errors import DurationExceeded, MemoryExceeded
from fnserve.supervisor import AutoscalePolicy, Maintenance, MemoryGuard, SingleInstancePolicy, Supervisor
from fnserve.supervisor.function_pool import FunctionPool
from fnserve.supervisor.leasing import Deadlines

A = "api/a.py"


@pytest.mark.parametrize("policy", ["single", "autoscale"])
def test_both_policies_enforce_max_duration_and_memory_with_the_same_answers(tmp_path, policy):
    root = make_project(tmp_path, {A: SYNC_APP})

    async def main() -> None:
        sup = Supervisor([target(root, A, limits(max_duration=1.0, memory=256))], policy=policy)
        async with sup, serving(sup, {A: function(root, A)}) as client:
            assert (await client.get("/a/warm")).status_code == 200
            pid = int(sup.status()[A]["instances"][0]["pid"])
            began = time.monotonic()
            r = await client.get("/a/sleep?10")
            assert r.status_code == 504 and time.monotonic() - began < 2.0
            assert r.json()["error"] == {"code": "FUNCTION_INVOCATION_TIMEOUT", "message": DurationExceeded(A, 1.0).message}
            assert await wait_dead(pid)
            r = await client.get("/a/next")
            assert r.status_code == 200 and int(r.headers["x-pid"]) != pid
            pid = int(r.headers["x-pid"])
            r = await client.get("/a/alloc?2048")
            assert r.status_code == 502, r.text
            assert r.json()["error"]["code"] == "NO_RESPONSE_FROM_FUNCTION"
            assert r.json()["error"]["message"].startswith(MemoryExceeded(A, 256, None).message.split(" and was")[0])
            assert await wait_dead(pid)
            assert (await client.get("/a/after")).status_code == 200

    run(main())


def test_single_policy_keeps_the_configured_duration_and_memory():
    configured = limits(max_duration=2.5, memory=300, concurrency=7, max_instances=4, queue_size=3)
    got = SingleInstancePolicy().limits(configured)
    assert (got.max_duration, got.memory) == (2.5, 300)
    assert (got.concurrency, got.max_instances, got.queue_size, got.idle_timeout) == (UNBOUNDED, 1, UNBOUNDED, math.inf)
    assert SingleInstancePolicy().limits(None) == FunctionLimits()  # no limits: no max_duration, no memory
    assert (FunctionLimits().max_duration, FunctionLimits().memory) == (None, None)


class _Watched:
    """What ``Deadlines`` reads of a ``Lease``: ``deadline`` (hashable by identity)."""

    deadline: float | None = None


def test_deadlines_sweep_expires_only_overdue_leases_with_one_timer():
    async def main() -> None:
        loop = asyncio.get_running_loop()
        expired: list[Any] = []
        deadlines = Deadlines(expired.append, tick=0.02)
        soon, later, done = (_Watched() for _ in range(3))
        now = loop.time()
        for lease, at in ((soon, now + 0.05), (later, now + 10), (done, now + 0.05)):
            deadlines.add(lease, at, loop)  # type: ignore[arg-type]
        deadlines.discard(done)  # type: ignore[arg-type]  # its request ended in time
        await asyncio.sleep(0.15)
        assert expired == [soon] and deadlines.pending == {later}
        deadlines.discard(later)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        assert deadlines._handle is None  # no timer while nothing is watched

    run(main())


class _FakeInstance:
    """What ``FunctionPool`` reads of an ``Instance``: usable, leases, load, served, idle_since."""

    usable = True

    def __init__(self) -> None:
        self.leases = self.served = 0
        self.idle_since: float | None = None
        self.conn = object()
        self.key = id(self)

    @property
    def load(self) -> int:
        return self.leases


def test_function_pool_hands_released_slots_to_waiters_in_order(tmp_path):
    async def main() -> None:
        pool = FunctionPool(target(tmp_path, A, limits(concurrency=1)), AutoscalePolicy())
        inst = _FakeInstance()
        pool.instances.append(inst)  # type: ignore[arg-type]
        assert pool.free() is inst
        lease = pool.grant(inst)  # type: ignore[arg-type]
        assert lease.cold and lease.waited_ms == 0.0 and pool.free() is None
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        pool.waiters.extend([first, second])
        lease.release()
        assert first.result() is inst and not second.done() and inst.leases == 1  # the slot went on at once
        lease.release()  # idempotent
        assert inst.leases == 1
        assert not pool.lease(inst, 5.0).cold  # type: ignore[arg-type]

    run(main())


def test_maintenance_step_kills_a_silent_instance_and_ticks_scaling():
    killed: list[str] = []
    steps: list[Any] = []
    inst = _Watched()  # hashable, like an Instance
    inst.__dict__.update(state="ready", pid=1, target=SimpleNamespace(id=A, limits=None), last_heartbeat=0.0,
                         kill=killed.append)
    pool = SimpleNamespace()
    pools = SimpleNamespace(pools={A: pool}, live={inst}, tick=lambda now: steps.append(pool))
    maintenance = Maintenance(pools, MemoryGuard("none"), memory_poll=0.1, tick=1.0,  # type: ignore[arg-type]
                              heartbeat_timeout=5.0)
    maintenance.step(3.0)
    assert killed == [] and steps == [pool]
    maintenance.step(3.5)  # before the next tick: no scaling step
    assert steps == [pool]
    maintenance.step(6.0)
    assert killed == ["heartbeat"] and steps == [pool, pool]
