"""``fnserve start`` signals (issue 6 item 4): SIGTERM drains in-flight requests and exits 0 (ASGI
lifespan shutdown runs), readiness is 503 while draining, SIGHUP reloads without a failed request
and keeps the previous version when the new one is broken. Real server subprocess, bounded loops."""

from __future__ import annotations

import re
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from startserver import StartServer
from startserver import wait_inflight as _wait_inflight


@pytest.fixture
def server(tmp_path: Path):
    servers: list[StartServer] = []

    def make(*args: str, expect_admin: bool = False) -> StartServer:
        srv = StartServer("start_basic", tmp_path, *args)
        servers.append(srv)
        srv.start(expect_admin=expect_admin)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def test_sigterm_finishes_20_inflight_requests_then_exits_0(server) -> None:
    srv = server()
    assert httpx.get(srv.url + "/api/asgi", timeout=30).status_code == 200  # instance up
    # one client for the 20: a client per request costs an SSL context each, and on a loaded machine the first
    # requests were done before the last one was sent (never 20 in flight)
    with ThreadPoolExecutor(20) as pool, httpx.Client(timeout=15, limits=httpx.Limits(max_connections=30)) as client:
        futures = [pool.submit(client.get, srv.url + "/api/asgi?sleep=1") for _ in range(20)]
        _wait_inflight(srv.url, "api/asgi.py", 20)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        results = [f.result() for f in futures]
    assert [r.status_code for r in results] == [200] * 20
    assert all(r.text == "asgi ok" for r in results)
    assert srv.wait(15) == 0
    assert time.monotonic() - t0 < 10
    srv.wait_for_line(r"\[api/asgi\.py \d+\] lifespan shutdown")  # the instance's lifespan shutdown ran
    srv.wait_for_line(r"fnserve start: stopped")
    with pytest.raises(httpx.ConnectError):
        httpx.get(srv.url + "/api/asgi", timeout=2)


def test_readiness_is_503_while_draining_on_the_admin_port(server) -> None:
    srv = server("--admin-port", "0", expect_admin=True)
    admin = srv.admin_url + "/_fnserve"
    assert httpx.get(admin + "/ready").status_code == 200
    assert httpx.get(srv.url + "/api/asgi", timeout=30).status_code == 200
    with ThreadPoolExecutor(3) as pool:
        futures = [pool.submit(httpx.get, srv.url + "/api/asgi?sleep=2", timeout=15) for _ in range(3)]
        _wait_inflight(srv.admin_url, "api/asgi.py", 3)
        srv.signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        ready = httpx.get(admin + "/ready")
        while ready.status_code == 200 and time.monotonic() < deadline:
            time.sleep(0.02)
            ready = httpx.get(admin + "/ready")
        assert ready.status_code == 503 and ready.json() == {"status": "draining"}
        assert ready.headers["retry-after"] == "5"
        assert httpx.get(admin + "/health").status_code == 200  # alive while draining
        assert httpx.get(admin + "/health?ready").status_code == 503
        assert "fnserve_ready 0" in httpx.get(admin + "/metrics").text
        assert [f.result().status_code for f in futures] == [200] * 3
    assert srv.wait(15) == 0


def test_sighup_reload_serves_the_new_code_without_a_failed_request(server) -> None:
    srv = server()
    version = srv.project / "api" / "version.py"
    statuses: list[int] = []
    bodies: list[str] = []
    errors: list[str] = []
    stop = threading.Event()

    def hammer(path: str) -> None:
        with httpx.Client(base_url=srv.url, timeout=15) as client:
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:
                try:
                    r = client.get(path)
                except httpx.HTTPError as exc:
                    errors.append(repr(exc))
                    continue
                statuses.append(r.status_code)
                if path == "/api/version":
                    bodies.append(r.text)

    assert httpx.get(srv.url + "/api/version", timeout=30).text == "v1"
    assert httpx.get(srv.url + "/api/asgi", timeout=30).status_code == 200
    threads = [threading.Thread(target=hammer, args=(p,)) for p in ("/api/version", "/api/version", "/api/asgi?sleep=0.3")]
    for t in threads:
        t.start()
    time.sleep(0.3)
    version.write_text(version.read_text().replace('VERSION = "v1"', 'VERSION = "v2-reloaded"'))
    mark = len(srv.lines)
    srv.signal(signal.SIGHUP)
    srv.wait_for_line(r"reload: done", timeout=20, start=mark)
    deadline = time.monotonic() + 10
    while "v2-reloaded" not in bodies[-5:] and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # some requests after the switch too
    stop.set()
    for t in threads:
        t.join(20)
    assert not errors, errors[:3]
    assert statuses and set(statuses) == {200}, {s for s in statuses if s != 200}
    assert bodies[-1] == "v2-reloaded"
    switch = bodies.index("v2-reloaded")
    assert set(bodies[:switch]) == {"v1"} and set(bodies[switch:]) == {"v2-reloaded"}
    metrics = httpx.get(srv.url + "/_fnserve/metrics").text
    assert 'fnserve_reloads_total{result="ok"} 1' in metrics


def test_sighup_with_a_broken_project_keeps_the_previous_version(server) -> None:
    srv = server()
    assert httpx.get(srv.url + "/api/version", timeout=30).text == "v1"
    version = srv.project / "api" / "version.py"
    version.write_text("def broken(:\n")
    mark = len(srv.lines)
    srv.signal(signal.SIGHUP)
    line = srv.wait_for_line(r"reload failed, still serving the previous version", timeout=20, start=mark)
    assert "api/version.py" in line
    assert httpx.get(srv.url + "/api/version", timeout=30).text == "v1"
    assert httpx.get(srv.url + "/_fnserve/ready").status_code == 200
    assert 'fnserve_reloads_total{result="failed"} 1' in httpx.get(srv.url + "/_fnserve/metrics").text
    assert re.search(r"api/version\.py", "\n".join(srv.lines[mark:]))


def test_sigint_with_a_short_grace_period_cuts_off_a_long_request_and_exits_0(server) -> None:
    srv = server("--grace-period", "1")
    assert httpx.get(srv.url + "/api/asgi", timeout=30).status_code == 200
    with ThreadPoolExecutor(1) as pool:
        future = pool.submit(httpx.get, srv.url + "/api/asgi?sleep=20", timeout=30)
        _wait_inflight(srv.url, "api/asgi.py", 1)
        t0 = time.monotonic()
        srv.signal(signal.SIGINT)
        assert srv.wait(15) == 0
        elapsed = time.monotonic() - t0
        cut = future.result()
    assert cut.status_code == 503 and cut.headers["retry-after"] == "1"
    assert cut.json()["error"]["code"] == "SHUTTING_DOWN" and "x-fnserve-request-id" in cut.headers
    assert elapsed < 8, elapsed  # grace (1 s) + instance stop (≥ 1 s, then SIGKILL after 2 s more)
    srv.wait_for_line(r"SIGINT received, finishing in-flight requests \(up to 1 s")


def test_sighup_cannot_move_the_socket_and_says_so(server) -> None:
    srv = server()
    (srv.project / "fnserve.toml").write_text("host = \"127.0.0.2\"\nlog-format = \"json\"\n")
    mark = len(srv.lines)
    srv.signal(signal.SIGHUP)
    srv.wait_for_line(r"warning: reload: host, log_format changed; that takes a restart", timeout=20, start=mark)
    srv.wait_for_line(r"reload: done", timeout=20, start=mark)
    assert httpx.get(srv.url + "/_fnserve/health").status_code == 200  # same socket, endpoints still mounted
    mark = len(srv.lines)  # the running values were kept: a second SIGHUP still says so (text, not JSON)
    srv.signal(signal.SIGHUP)
    srv.wait_for_line(r"warning: reload: host, log_format changed; that takes a restart", timeout=20, start=mark)
    srv.wait_for_line(r"reload: done", timeout=20, start=mark)
