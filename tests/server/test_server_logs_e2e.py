"""``server.logs`` end to end: ``fnserve dev`` over a real socket with ``--log-format json`` prints
only JSON records of the one schema (banner and route table included); in text a request path
cannot forge a log line; the message ``dev`` and ``start`` exit with is in the chosen format."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from devserver import PROJECTS, DevServer, raw_get


def test_dev_json_prints_only_json_lines(tmp_path: Path) -> None:
    server = DevServer("dev_vercel", tmp_path, "--no-install", "--log-format", "json", "--handler-log", "show")
    server.start()
    try:
        r = httpx.get(server.url + "/api/users/3?y=1", headers={"x-request-id": "dev-json-1"}, timeout=15)
        assert r.status_code == 200 and r.headers["x-fnserve-request-id"] == "dev-json-1"
        server.wait_for_line(r'"request_id":"dev-json-1"')
        server.wait_for_line(r'"logger":"fnserve\.function\.api/users/\[id\]"')  # the function's own output
    finally:
        server.stop()
    records = [json.loads(line) for line in server.lines]  # raises on any line that is not JSON
    assert all(isinstance(r, dict) and {"time", "level", "logger", "msg"} <= set(r) for r in records)
    messages = [r["msg"] for r in records if r["logger"] == "fnserve.dev"]
    assert any("ROUTE" in m and "/api/users/[id]" in m for m in messages), "the route table is a record too"
    assert any(m.startswith("fnserve dev: http://127.0.0.1:") for m in messages)
    access = next(r for r in records if r.get("request_id") == "dev-json-1")
    assert access | {"time": None, "duration_ms": None, "instance": None, "cold": None} == {
        "time": None, "level": "info", "logger": "fnserve.access", "msg": "GET /api/users/3?y=1 200",
        "request_id": "dev-json-1", "method": "GET", "path": "/api/users/3?y=1", "status": 200, "duration_ms": None,
        "function": "api/users/[id].py", "instance": None, "cold": None,
    }
    output = next(r for r in records if r["logger"].startswith("fnserve.function."))
    assert output["function"] == "api/users/[id].py" and output["stream"] in ("stdout", "stderr")


def test_dev_text_escapes_control_characters_of_paths(tmp_path: Path) -> None:
    server = DevServer("dev_vercel", tmp_path, "--no-install")
    server.start()
    try:
        status, _ = raw_get(server.url, "/nope%0aFORGED%20200%1b[31mred")
        assert status == 404
        line = server.wait_for_line(r"GET /nope")
    finally:
        server.stop()
    assert "GET /nope%0AFORGED%20200%1B[31mred 404 " in line
    assert not any(x.startswith("FORGED") for x in server.lines) and not any("\x1b" in x for x in server.lines)


@pytest.mark.parametrize("command", ["dev", "start"])
def test_exit_error_is_in_the_chosen_format(command: str, tmp_path: Path) -> None:
    project = tmp_path / "start_basic"
    shutil.copytree(PROJECTS / "start_basic", project, ignore=shutil.ignore_patterns(".fnserve"))
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    try:
        out = subprocess.run(
            [sys.executable, "-m", "fnserve", command, str(project), "--port", str(port),
             "--no-install", "--log-format", "json"],
            capture_output=True, text=True, timeout=60,
        )
    finally:
        taken.close()
    assert out.returncode == 2, out.stdout + out.stderr
    assert all(json.loads(line) for line in out.stdout.splitlines()), out.stdout
    last = json.loads(out.stderr.splitlines()[-1])
    assert last["level"] == "error" and last["logger"] == f"fnserve.{command}"
    assert f"port {port} is in use" in last["msg"] and "--port" in last["msg"]
    assert not list((project / ".fnserve" / "snapshots").glob("*")), "a start that exits 2 leaves no snapshot"
