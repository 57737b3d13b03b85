"""The dashboard over real sockets (issue 13 item 2): ``fnserve dev`` and ``fnserve start``
subprocesses, httpx clients. The event stream sees a request as it is answered; the state
document shows function states; a project route under ``/_fnserve/`` still wins; ``start``
serves it only when asked, and only on ``--admin-port``."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from devserver import DevServer
from startserver import PROJECTS, StartServer


@pytest.fixture
def dev(tmp_path: Path):
    servers: list[DevServer] = []

    def make(case: str = "dashboard", *args: str) -> DevServer:
        srv = DevServer(case, tmp_path / f"s{len(servers)}", "--no-install", *args)
        servers.append(srv)
        srv.start()
        return srv

    yield make
    for srv in servers:
        srv.stop()


def read_events(url: str, path: str, during, timeout: float = 20.0, line: str | None = None) -> list[tuple[str, dict]]:
    """Open ``url``'s event stream, run ``during()`` once it is open, and collect events until the
    ``request`` event of ``path`` (and, with ``line``, the ``output`` event of that line) came.
    Returns ``[(event name, data)]``."""
    events: list[tuple[str, dict]] = []
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=httpx.Timeout(5.0, read=timeout)) as client:
        with client.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            threading.Thread(target=during, daemon=True).start()
            name = ""
            for text in response.iter_lines():
                if text.startswith("event: "):
                    name = text[len("event: "):]
                elif text.startswith("data: "):
                    events.append((name, json.loads(text[len("data: "):])))
                    if any(k == "request" and e["path"] == path for k, e in events) and (
                            line is None or any(k == "output" and e["line"] == line for k, e in events)):
                        return events
                if time.monotonic() > deadline:
                    break
    raise AssertionError(f"no request event for {path} in {events}")


def test_dev_event_stream_sees_a_request_appear(dev) -> None:
    srv = dev()
    srv.wait_for_line(r"dashboard: http://127\.0\.0\.1:\d+/_fnserve/")

    def send() -> None:
        time.sleep(0.2)
        httpx.get(srv.url + "/api/hello?from=e2e", timeout=30)

    events = read_events(srv.url + "/_fnserve/api/events", "/api/hello?from=e2e", send,
                         line="hello handled /api/hello?from=e2e")
    [request] = [e for kind, e in events if kind == "request" and e["path"] == "/api/hello?from=e2e"]
    assert request["method"] == "GET" and request["status"] == 200 and request["function"] == "api/hello.py"
    assert request["cold"] is True and isinstance(request["pid"], int) and request["ms"] > 0
    assert len(request["id"]) == 16
    [output] = [e for kind, e in events if kind == "output" and e["line"] == "hello handled /api/hello?from=e2e"]
    assert output["function"] == "api/hello.py" and output["pid"] == request["pid"] and output["stream"] == "stdout"
    # the terminal's access line has the pid and cold/warm too (item 4)
    srv.wait_for_line(rf"GET /api/hello\?from=e2e 200 .* api/hello\.py pid={request['pid']} cold id={request['id']}")


def test_dev_state_shows_ready_load_error_and_crashed_functions(dev) -> None:
    srv = dev()
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        assert client.get("/api/hello").status_code == 200
        assert client.get("/api/broken").status_code == 500
        assert client.get("/api/crash", params={"die": "1"}).status_code == 502
        srv.wait_for_line(r"api/crash\.py: worker \d+ exited with status 3")
        state = client.get("/_fnserve/api/state").json()
        page = client.get("/_fnserve/", headers={"accept": "text/html"})
    assert page.status_code == 200 and "fnserve dashboard" in page.text
    by_id = {f["id"]: f for f in state["functions"]}
    hello = by_id["api/hello.py"]
    assert hello["state"] == "ready" and hello["cold_starts"] == 1
    [inst] = hello["instances"]
    assert inst["state"] == "ready" and inst["rss_mb"] > 1 and inst["uptime_s"] >= 0
    broken = by_id["api/broken.py"]
    assert broken["state"] == "load error"
    assert "KeyError: 'timeout'" in broken["error"]["traceback"]
    crash = by_id["api/crash.py"]
    assert crash["state"] == "crashed" and "exited with status 3" in crash["detail"]
    assert by_id["api/items.py"]["state"] == "not started"
    assert {"pattern": "/api/items", "methods": ["GET", "HEAD", "OPTIONS"], "kind": "handler",
            "file": "api/items.py", "match": "exact"} in state["routes"]
    assert state["deps"]["state"] == "off"  # --no-install


def test_dev_project_route_under_fnserve_wins(dev) -> None:
    srv = dev("start_reserved")
    srv.wait_for_line(r"warning: the project serves public/_fnserve/ under /_fnserve/: the project wins")
    assert not any(line.startswith("dashboard: ") for line in srv.lines)
    assert httpx.get(srv.url + "/_fnserve/api/state", timeout=10).status_code == 404  # the project's 404
    assert httpx.get(srv.url + "/_fnserve/health", timeout=10).status_code == 200  # its public file


def test_dev_without_the_dashboard(dev) -> None:
    srv = dev("dashboard", "--no-dashboard")
    assert not any(line.startswith("dashboard: ") for line in srv.lines)
    r = httpx.get(srv.url + "/_fnserve/api/state", timeout=10)
    assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"  # the front's own 404


def test_start_needs_admin_port_for_the_dashboard(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "fnserve", "start", str(PROJECTS / "start_basic"), "--port", "0",
                             "--no-install", "--dashboard"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "--dashboard: dashboard: fnserve start serves the dashboard only on --admin-port" in result.stderr


def test_start_serves_the_dashboard_on_the_admin_port_only_when_asked(tmp_path: Path) -> None:
    plain = StartServer("start_basic", tmp_path / "plain", "--admin-port", "0")
    plain.start(expect_admin=True)
    try:
        assert httpx.get(plain.admin_url + "/_fnserve/", timeout=10).status_code == 404  # off by default
    finally:
        plain.stop()
    srv = StartServer("start_basic", tmp_path / "with", "--admin-port", "0", "--dashboard")
    srv.start(expect_admin=True)
    try:
        srv.wait_for_line(r"dashboard: http://127\.0\.0\.1:\d+/_fnserve/")
        assert httpx.get(srv.url + "/_fnserve/", timeout=10).status_code == 404  # never on the main port
        admin = srv.admin_url
        assert httpx.get(admin + "/_fnserve/health", timeout=10).json() == {"status": "alive"}  # still there
        assert "fnserve dashboard" in httpx.get(admin + "/_fnserve/", timeout=10).text

        def send() -> None:
            time.sleep(0.2)
            httpx.get(srv.url + "/api/hello?via=start", timeout=30)

        events = read_events(admin + "/_fnserve/api/events", "/api/hello?via=start", send)
        [request] = [e for kind, e in events if kind == "request"]
        assert request["status"] == 200 and request["function"] == "api/hello.py" and request["cold"] is True
        state = httpx.get(admin + "/_fnserve/api/state", timeout=10).json()
        assert state["server"]["command"] == "start" and state["deps"] is None
        assert {f["id"]: f["state"] for f in state["functions"]}["api/hello.py"] == "ready"
    finally:
        srv.stop()


def test_dev_dashboard_shows_a_project_that_cannot_be_loaded(dev) -> None:
    srv = dev("dev_duplicate")  # two files for one route: the project model fails at start
    state = httpx.get(srv.url + "/_fnserve/api/state", timeout=10).json()
    assert "route /api/a is produced by both" in state["problem"]
    assert state["functions"] == [] and state["routes"] == []
