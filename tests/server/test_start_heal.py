"""``fnserve start`` failures that heal (issue 10 items 1, 10, 11): a failed load is retried with
backoff and reported by /_fnserve/ready and the metrics; a worker stuck in one long call is killed
after ``--heartbeat-timeout`` with a 502 that says so; instances are replaced after
``--max-requests`` and after ``--max-failures`` failed requests in a row. Real server subprocess
on loopback, bounded loops."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
from startserver import StartServer
from startserver import until as _until


@pytest.fixture
def faults(tmp_path: Path):
    servers: list[StartServer] = []
    flags = tmp_path / "flags"
    flags.mkdir()

    def make(*args: str) -> StartServer:
        srv = StartServer("start_faults", tmp_path, *args, env={"FAULTS_FLAGS": str(flags), "FNSERVE_ENV_PASSTHROUGH": "FAULTS_FLAGS"})
        servers.append(srv)
        srv.start()
        return srv

    make.flags = flags  # type: ignore[attr-defined]
    yield make
    for srv in servers:
        srv.stop()


def test_failed_lifespan_startup_is_retried_and_heals(faults) -> None:
    (faults.flags / "down").write_text("")
    srv = faults("--load-retry", "1")
    r = httpx.get(srv.url + "/api/flaky", timeout=30)
    assert r.status_code == 500
    ready = httpx.get(srv.url + "/_fnserve/ready", timeout=5)
    assert ready.status_code == 503
    assert ready.json()["status"] == "failed-load" and "api/flaky.py" in ready.json()["functions"]
    metrics = httpx.get(srv.url + "/_fnserve/metrics", timeout=5).text
    assert 'fnserve_function_load_failed{function="api/flaky.py"} 1' in metrics
    srv.wait_for_line(r"api/flaky\.py: retrying its load \(attempt 2", timeout=10)  # retried without traffic
    (faults.flags / "down").unlink()  # the database is back
    _until(lambda: httpx.get(srv.url + "/api/flaky", timeout=30).status_code == 200, what="the function to heal")
    assert httpx.get(srv.url + "/api/flaky", timeout=5).text == "flaky ok"
    assert httpx.get(srv.url + "/_fnserve/ready", timeout=5).status_code == 200
    metrics = httpx.get(srv.url + "/_fnserve/metrics", timeout=5).text
    assert 'fnserve_function_load_failed{function="api/flaky.py"} 0' in metrics
    srv.wait_for_line(r"api/flaky\.py: loaded after \d+ failed attempt")
    attempts = [line for line in srv.lines if "retrying its load" in line]
    numbers = [line.split("attempt ")[1].split(";")[0] for line in attempts]
    assert len(numbers) == len(set(numbers))  # each retry logged once


def test_requests_between_retries_fail_fast(faults) -> None:
    (faults.flags / "down").write_text("")
    srv = faults("--load-retry", "30")
    assert httpx.get(srv.url + "/api/flaky", timeout=30).status_code == 500
    t0 = time.monotonic()
    assert httpx.get(srv.url + "/api/flaky", timeout=30).status_code == 500  # within the 1 s backoff
    assert time.monotonic() - t0 < 1.0
    assert httpx.get(srv.url + "/api/pid", timeout=30).status_code == 200  # other functions serve


def test_heartbeat_timeout_is_a_setting_and_its_502_says_why(faults) -> None:
    from fnserve.config import load_config

    assert load_config(Path(__file__).parent.parent / "projects" / "start_faults", mode="start").heartbeat_timeout >= 30
    srv = faults("--heartbeat-timeout", "2")
    assert httpx.get(srv.url + "/api/stuck?sleep=1", timeout=30).text == "stuck ok"  # under the timeout
    r = httpx.get(srv.url + "/api/stuck?sleep=8", timeout=30)
    assert r.status_code == 502
    error = r.json()["error"]
    assert error["code"] == "NO_RESPONSE_FROM_FUNCTION"
    assert "no heartbeat" in error["message"] and "heartbeat_timeout 2 s" in error["message"]
    srv.wait_for_line(r"api/stuck\.py: worker \d+ sent no heartbeat for [\d.]+ s, over heartbeat_timeout \(2 s\)")
    assert httpx.get(srv.url + "/api/stuck", timeout=30).text == "stuck ok"  # a new instance serves


def _pids(url: str, n: int, query: str = "") -> list[tuple[int, str]]:
    out = []
    for _ in range(n):
        r = httpx.get(url + "/api/pid" + query, timeout=30)
        out.append((r.status_code, r.text))
    return out


def test_an_instance_is_replaced_after_max_requests(faults) -> None:
    srv = faults("--max-requests", "3", "--max-requests-jitter", "0", "--max-instances", "1")
    first = _pids(srv.url, 3)
    assert len({pid for _, pid in first}) == 1
    later = _pids(srv.url, 3)
    assert all(status == 200 for status, _ in first + later)
    assert later[0][1] != first[0][1] and len({pid for _, pid in later}) == 1
    srv.wait_for_line(r"api/pid\.py: replacing worker \d+: it served 3 requests \(max_requests\)")  # twice: 6 requests
    metrics = httpx.get(srv.url + "/_fnserve/metrics", timeout=5).text
    assert 'fnserve_instance_replacements_total{function="api/pid.py",reason="max_requests"} 2' in metrics


def test_an_instance_whose_requests_keep_failing_is_replaced(faults) -> None:
    srv = faults("--max-failures", "3", "--max-instances", "1")
    failing = _pids(srv.url, 3, "?fail=1")
    assert [status for status, _ in failing] == [500] * 3 and len({pid for _, pid in failing}) == 1
    [(status, pid)] = _pids(srv.url, 1)
    assert status == 200 and pid != failing[0][1]  # a fresh instance
    srv.wait_for_line(r"api/pid\.py: replacing worker \d+: its last 3 requests failed \(max_failures\)")


def test_failures_that_are_not_in_a_row_do_not_replace(faults) -> None:
    srv = faults("--max-failures", "2", "--max-instances", "1")
    got = _pids(srv.url, 1, "?fail=1") + _pids(srv.url, 1) + _pids(srv.url, 1, "?fail=1") + _pids(srv.url, 1)
    assert len({pid for _, pid in got}) == 1


def test_faulty_functions_never_fail_a_healthy_one_and_heal(faults) -> None:
    """Steady load on /api/pid while other functions raise, block their event loop past the
    heartbeat timeout, fail their lifespan startup, and flood stdout: zero failed healthy
    requests; each faulty one gets its documented status and serves again afterwards."""
    import threading

    (faults.flags / "down").write_text("")
    srv = faults("--heartbeat-timeout", "2", "--load-retry", "1", "--max-failures", "3")
    assert httpx.get(srv.url + "/api/pid", timeout=30).status_code == 200
    bad: list[int] = []
    done = threading.Event()
    count = [0]

    def healthy() -> None:
        with httpx.Client(timeout=30) as client:
            while not done.is_set():
                status = client.get(srv.url + "/api/pid").status_code
                count[0] += 1
                if status != 200:
                    bad.append(status)

    workers = [threading.Thread(target=healthy) for _ in range(2)]
    for t in workers:
        t.start()
    try:
        assert [httpx.get(srv.url + "/api/boom", timeout=30).status_code for _ in range(4)] == [500] * 4
        assert httpx.get(srv.url + "/api/flaky", timeout=30).status_code == 500
        assert httpx.get(srv.url + "/api/loud?size=3000000", timeout=30).text == "ok"
        assert httpx.get(srv.url + "/api/stuck?sleep=6", timeout=30).status_code == 502
        (faults.flags / "down").unlink()
        _until(lambda: httpx.get(srv.url + "/api/flaky", timeout=30).status_code == 200, what="flaky to heal")
        assert httpx.get(srv.url + "/api/stuck", timeout=30).text == "stuck ok"
        assert httpx.get(srv.url + "/api/loud", timeout=30).text == "ok"
    finally:
        done.set()
        for t in workers:
            t.join(30)
    assert bad == [] and count[0] > 50
    srv.wait_for_line(r"api/boom\.py: replacing worker \d+: its last 3 requests failed")
