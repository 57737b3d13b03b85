"""``fnserve start`` end to end (issue 6 items 4-6): a real server subprocess, httpx clients.

Serving the three kinds, request ids, JSON logs, health/readiness/metrics, the admin port, a
project route under ``/_fnserve/``, fatal problems at start.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from startserver import PROJECTS, StartServer


@pytest.fixture
def server(tmp_path: Path):
    servers: list[StartServer] = []

    def make(case: str = "start_basic", *args: str, expect_admin: bool = False) -> StartServer:
        srv = StartServer(case, tmp_path, *args)
        servers.append(srv)
        srv.start(expect_admin=expect_admin)
        return srv

    yield make
    for srv in servers:
        srv.stop()


def test_serves_handler_wsgi_asgi_with_request_ids(server) -> None:
    srv = server()
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        r = client.get("/api/hello")
        assert r.status_code == 200 and r.text == "hello from handler"
        generated = r.headers["x-fnserve-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", generated)
        r = client.get("/api/wsgi", headers={"X-Request-Id": "trace-42"})
        assert r.status_code == 200
        assert r.json() == {"kind": "wsgi", "request_id": "trace-42"}  # the function sees the client's id
        assert r.headers["x-fnserve-request-id"] == "trace-42"
        r = client.get("/api/wsgi", headers={"X-Request-Id": "bad id with spaces"})
        assert r.json()["request_id"] == r.headers["x-fnserve-request-id"] != "bad id with spaces"
        r = client.get("/api/asgi")
        assert r.status_code == 200 and r.text == "asgi ok"
        assert "server" not in r.headers
        assert client.get("/nothing-here").status_code == 404
    line = srv.wait_for_line(r"GET /api/wsgi 200 .* api/wsgi\.py pid=\d+ cold id=trace-42")
    assert "ms" in line
    srv.wait_for_line(r"\[api/hello\.py \d+\] hello handler called")


def test_production_env_files_reach_the_functions(server) -> None:
    srv = server()
    assert httpx.get(srv.url + "/api/env", timeout=30).text == "from .env.production"


def test_json_log_lines_carry_the_fields(server) -> None:
    srv = server("start_basic", "--log-format", "json")
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        assert client.get("/api/hello", headers={"x-request-id": "j-1"}).status_code == 200
        assert client.get("/api/hello", headers={"x-request-id": "j-2"}).status_code == 200
    srv.wait_for_line(r'"request_id":"j-2"')
    records = [json.loads(line) for line in srv.lines if line.startswith("{")]
    assert len(records) == len(srv.lines), "every line is a JSON object in json mode"
    access = {r["request_id"]: r for r in records if r["logger"] == "fnserve.access"}
    first, second = access["j-1"], access["j-2"]
    for rec in (first, second):
        assert rec["method"] == "GET" and rec["path"] == "/api/hello" and rec["status"] == 200
        assert rec["function"] == "api/hello.py" and isinstance(rec["instance"], int)
        assert isinstance(rec["duration_ms"], float) and rec["time"].endswith("Z")
    assert first["cold"] is True and second["cold"] is False
    assert first["instance"] == second["instance"]
    output = [r for r in records if r.get("function") == "api/hello.py" and r["logger"].startswith("fnserve.function.")]
    assert output and output[0]["msg"] == "hello handler called" and output[0]["pid"] == first["instance"]
    assert output[0]["stream"] == "stdout"
    assert any("fnserve start: http://" in r["msg"] for r in records)


def test_health_readiness_and_metrics(server) -> None:
    srv = server()
    with httpx.Client(base_url=srv.url, timeout=30) as client:
        assert client.get("/_fnserve/health").json() == {"status": "alive"}
        assert client.get("/_fnserve/ready").json() == {"status": "ready"}
        assert client.get("/_fnserve/health?ready").status_code == 200
        for _ in range(5):
            assert client.get("/api/hello").status_code == 200
        for _ in range(3):
            assert client.get("/api/asgi").status_code == 200
        assert client.get("/missing").status_code == 404
        r = client.get("/_fnserve/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'fnserve_requests_total{function="api/hello.py",status="200"} 5' in text
    assert 'fnserve_requests_total{function="api/asgi.py",status="200"} 3' in text
    assert 'fnserve_requests_total{function="-",status="404"} 1' in text
    assert 'fnserve_request_duration_seconds_count{function="api/hello.py"} 5' in text
    assert 'fnserve_request_duration_seconds_bucket{function="api/hello.py",le="+Inf"} 5' in text
    assert 'fnserve_cold_starts_total{function="api/hello.py"} 1' in text
    assert 'fnserve_cold_start_duration_seconds_count{function="api/asgi.py"} 1' in text
    assert 'fnserve_instances{function="api/hello.py",state="ready"} 1' in text
    assert 'fnserve_instances{function="api/version.py",state="ready"} 0' in text
    assert 'fnserve_queue_depth{function="api/hello.py"} 0' in text
    assert "fnserve_ready 1" in text
    assert "/_fnserve" not in "".join(line for line in srv.lines if " GET " in line), "probes are not logged"
    # every sample line is "name{labels} value" or "name value"
    for line in text.splitlines():
        assert line.startswith("#") or re.fullmatch(r'[a-z_]+(\{[^}]*\})? [0-9.e+-]+|[a-z_]+(\{[^}]*\})? \+Inf', line), line


def test_admin_port_serves_the_endpoints_and_the_main_port_does_not(server) -> None:
    srv = server("start_basic", "--admin-port", "0", expect_admin=True)
    assert srv.admin_url and srv.admin_url != srv.url
    assert httpx.get(srv.admin_url + "/_fnserve/health").json() == {"status": "alive"}
    assert httpx.get(srv.admin_url + "/_fnserve/metrics").status_code == 200
    assert httpx.get(srv.admin_url + "/api/hello").status_code == 404
    r = httpx.get(srv.url + "/_fnserve/health")
    assert r.status_code == 404 and "x-fnserve-request-id" in r.headers  # the project's 404


def test_project_route_under_fnserve_wins_with_a_warning(server) -> None:
    srv = server("start_reserved")
    srv.wait_for_line(r"warning: the project serves public/_fnserve/ under /_fnserve/.*pass --admin-port")
    r = httpx.get(srv.url + "/_fnserve/health")
    assert r.status_code == 200 and r.text == "this is the project's own health page\n"
    assert httpx.get(srv.url + "/_fnserve/metrics").status_code == 404


def test_project_route_under_fnserve_with_admin_port(server) -> None:
    srv = server("start_reserved", "--admin-port", "0", expect_admin=True)
    srv.wait_for_line(r"warning: .*served on --admin-port only")
    assert httpx.get(srv.url + "/_fnserve/health").text == "this is the project's own health page\n"
    assert httpx.get(srv.admin_url + "/_fnserve/health").json() == {"status": "alive"}


@pytest.mark.parametrize("case, expected", [
    ("syntax_error", r"cannot be served"),
    ("config_bad_json", r"vercel\.json"),
])
def test_problems_at_start_are_fatal(case: str, expected: str, tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fnserve", "start", str(PROJECTS / case), "--port", "0", "--no-install"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 2, out.stdout + out.stderr
    assert re.search(expected, out.stderr), out.stderr
    assert "fnserve start: http" not in out.stdout
