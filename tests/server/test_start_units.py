"""In-memory tests of ``fnserve start``'s observability pieces: Prometheus exposition, the admin
endpoints, request ids and cold/warm in ``observe``, and the log formats."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from typing import Any

import pytest

from fnserve.server.admin import AdminApp
from fnserve.server.logs import ACCESS, JsonFormatter, TextFormatter, access_record, install
from fnserve.server.metrics import Histogram, Metrics
from fnserve.server.observe import CURRENT, AccessLog, Observed, ObservedSupervisor, RequestInfo


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def call(app: Any, path: str, query: bytes = b"", headers: list | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "query_string": query, "headers": headers or []}
    await app(scope, receive, send)
    start = sent[0]
    return start["status"], dict(start["headers"]), b"".join(m.get("body", b"") for m in sent[1:])


STATUS = {
    "api/a.py": {"instances": [{"pid": 10, "state": "ready", "inflight": 2, "ready_ms": 4.0},
                               {"pid": 11, "state": "draining", "inflight": 1, "ready_ms": 30.0}],
                 "starting": 1, "queued": 3},
    'api/q"x.py': {"instances": [], "starting": 0, "queued": 0},
}


def test_histogram_buckets_are_cumulative_with_le_inclusive() -> None:
    hist = Histogram((0.1, 1.0))
    for value in (0.05, 0.1, 0.5, 2.0):
        hist.observe(value)
    lines = list(hist.lines("x", 'function="f"'))
    assert lines == [
        'x_bucket{function="f",le="0.1"} 2', 'x_bucket{function="f",le="1.0"} 3',
        'x_bucket{function="f",le="+Inf"} 4', 'x_sum{function="f"} 2.65', 'x_count{function="f"} 4',
    ]


def test_metrics_render_counts_instances_queue_and_cold_starts() -> None:
    metrics = Metrics()
    for status in (200, 200, 500):
        metrics.record_request("api/a.py", status, 0.003)
    text = metrics.render(STATUS, ready=True)
    assert 'fnserve_requests_total{function="api/a.py",status="200"} 2' in text
    assert 'fnserve_requests_total{function="api/a.py",status="500"} 1' in text
    assert 'fnserve_request_duration_seconds_bucket{function="api/a.py",le="0.005"} 3' in text
    assert 'fnserve_instances{function="api/a.py",state="ready"} 1' in text
    assert 'fnserve_instances{function="api/a.py",state="draining"} 1' in text
    assert 'fnserve_instances{function="api/a.py",state="starting"} 1' in text
    assert 'fnserve_function_inflight{function="api/a.py"} 3' in text
    assert 'fnserve_queue_depth{function="api/a.py"} 3' in text
    assert 'fnserve_cold_starts_total{function="api/a.py"} 2' in text
    assert 'fnserve_cold_start_duration_seconds_bucket{function="api/a.py",le="0.005"} 1' in text
    assert 'function="api/q\\"x.py"' in text  # label values escaped
    assert "fnserve_ready 1" in text and text.endswith("\n")
    metrics.render(STATUS, ready=False)  # the same pids are not counted twice
    assert 'fnserve_cold_starts_total{function="api/a.py"} 2' in metrics.render(STATUS, ready=False)
    # one HELP/TYPE per family, families not interleaved
    names = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert len(names) == len(set(names))


def test_admin_endpoints() -> None:
    state = {"now": "ready"}
    admin = AdminApp(lambda: state["now"], Metrics(), lambda: STATUS)
    assert run(call(admin, "/_fnserve/health"))[:1] == (200,)
    status, headers, body = run(call(admin, "/_fnserve/ready"))
    assert status == 200 and json.loads(body) == {"status": "ready"}
    state["now"] = "draining"
    status, headers, body = run(call(admin, "/_fnserve/ready"))
    assert status == 503 and headers[b"retry-after"] == b"5" and json.loads(body) == {"status": "draining"}
    assert run(call(admin, "/_fnserve/health", b"ready"))[0] == 503
    assert run(call(admin, "/_fnserve/health"))[0] == 200  # liveness does not care
    status, headers, body = run(call(admin, "/_fnserve/metrics"))
    assert status == 200 and headers[b"content-type"].startswith(b"text/plain; version=0.0.4")
    assert b"fnserve_ready 0" in body
    assert run(call(admin, "/_fnserve/other"))[0] == 404
    assert run(call(admin, "/_fnserve/health", method="POST"))[0] == 405
    assert run(call(admin, "/_fnserve/health", method="HEAD"))[2] == b""


def test_request_ids_and_admin_mount() -> None:
    seen: list[tuple[list, str | None]] = []

    async def app(scope: dict, receive: Any, send: Any) -> None:
        info = CURRENT.get()
        seen.append((scope["headers"], info.id if info else None))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"x-app", b"1")]})
        await send({"type": "http.response.body", "body": b"ok"})

    admin = AdminApp(lambda: "ready", Metrics(), dict)
    front = Observed(app, admin)
    status, headers, _ = run(call(front, "/x", headers=[(b"x-request-id", b"abc-1.2:3")]))
    assert headers[b"x-fnserve-request-id"] == b"abc-1.2:3" and headers[b"x-app"] == b"1"
    assert seen[-1] == ([(b"x-request-id", b"abc-1.2:3")], "abc-1.2:3")
    for bad in (b"has space", b"x" * 129, b"\xff"):
        _, headers, _ = run(call(front, "/x", headers=[(b"x-request-id", bad)]))
        rid = headers[b"x-fnserve-request-id"]
        assert re.fullmatch(rb"[0-9a-f]{16}", rid)
        assert seen[-1][0] == [(b"x-request-id", rid)]  # the invalid one replaced, not doubled
    assert run(call(front, "/_fnserve/health"))[0] == 200 and len(seen) == 4  # never reached the app
    front.admin = None
    run(call(front, "/_fnserve/health"))
    assert len(seen) == 5  # unmounted: the project gets it


class FakeInstance:
    pid = 4242
    ready_ms = 12.5  # launch → READY, read by the metrics' O(1) cold start count


class FakeLease:
    def __init__(self, cold: bool) -> None:
        self.instance, self.cold = FakeInstance(), cold


class FakeSupervisor:
    """``serve`` as the real one does it: wait (queued / cold start), report the lease, forward."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.started = False
        self.forwarded: list = []

    async def serve(self, function: Any, scope: Any, receive: Any, send: Any, forward: Any, on_lease: Any = None) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)
        lease = FakeLease(cold=not self.started)
        self.started = True
        if on_lease is not None:
            on_lease(lease)
        await forward("conn", scope, receive, send)

    def status(self) -> dict:
        return {}

    def restart(self, ids: Any) -> str:
        return "delegated"


def test_observed_supervisor_cold_then_warm_and_queue_depth() -> None:
    async def forward(conn: Any, scope: Any, receive: Any, send: Any) -> None:
        sup.forwarded.append(conn)

    sup = FakeSupervisor(delay=0.01)  # the first request waits for a "start"
    metrics = Metrics()
    observed = ObservedSupervisor(sup, metrics)

    async def request() -> tuple:
        info = RequestInfo("r")
        CURRENT.set(info)
        await observed.serve("api/a.py", {}, None, None, forward)
        return info.cold, info.instance, metrics.waiting["api/a.py"]

    async def scenario() -> list:
        first = asyncio.create_task(request())
        await asyncio.sleep(0.001)
        waiting = metrics.waiting["api/a.py"]  # queued while the instance starts
        out = [await first, waiting]
        sup.delay = 0
        out.append(await asyncio.create_task(request()))  # the instance is running: warm
        out.append(observed.restart(["x"]))
        return out

    first, waiting, second, delegated = run(scenario())
    assert metrics.cold_starts == {"api/a.py": 1}  # counted once, from the cold lease
    assert first == (True, 4242, 0) and waiting == 1
    assert second == (False, 4242, 0)
    assert sup.forwarded == ["conn", "conn"] and delegated == "delegated"


def test_access_log_hook_counts_and_logs(caplog: pytest.LogCaptureFixture) -> None:
    metrics = Metrics()
    hook = AccessLog(metrics)
    info = RequestInfo("rid-1")
    info.instance, info.cold = 42, False
    CURRENT.set(info)
    with caplog.at_level(logging.INFO, logger="fnserve.access"):
        hook({"type": "http", "method": "GET", "path": "/a", "query_string": b"x=1"}, 200, 0.0, "api/a.py")
    record = caplog.records[-1]
    assert (record.request_id, record.path, record.status, record.instance, record.cold) == ("rid-1", "/a?x=1", 200, 42, False)
    assert metrics.requests[("api/a.py", 200)] == 1


def test_formats_text_and_json() -> None:
    record = access_record("rid", "POST", "/api/x?y=1", 201, 3.25, "api/x.py", 77, True)
    text = TextFormatter().format(record)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z POST /api/x\?y=1 201 3\.2ms api/x\.py pid=77 cold id=rid", text)
    data = json.loads(JsonFormatter().format(record))
    assert data | {"time": None} == {
        "time": None, "level": "info", "logger": "fnserve.access", "msg": "POST /api/x?y=1 201", "request_id": "rid",
        "method": "POST", "path": "/api/x?y=1", "status": 201, "duration_ms": 3.25, "function": "api/x.py",
        "instance": 77, "cold": True,
    }
    line = logging.LogRecord("fnserve.function.api/x", logging.INFO, __file__, 0, "%s", ("multi\nline",), None)
    line.function, line.pid, line.stream = "api/x.py", 77, "stdout"
    assert json.loads(JsonFormatter().format(line))["msg"] == "multi\nline"
    assert TextFormatter().format(line).splitlines()[1].endswith("[api/x.py 77] line")


def test_install_only_touches_fnserve_and_uvicorn_loggers() -> None:
    stream = io.StringIO()
    root_handlers = list(logging.getLogger().handlers)
    installed = install("json", stream)
    try:
        ACCESS.handle(access_record("i", "GET", "/", 200, 1.0, "-", None, None))
        logging.getLogger("fnserve.start").warning("careful")
        logging.getLogger("uvicorn.error").error("boom")
    finally:
        installed.remove()
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["msg"] for r in lines] == ["GET / 200", "careful", "boom"]
    assert logging.getLogger().handlers == root_handlers
