"""``fnserve dev`` binds its port before installing (issue 13 item 3), over a real process on port 0.

The project's requirement is a wheel made by the test and served by ``localindex.LocalIndex`` on
loopback (``--index-url`` in requirements.txt: no network), with a fresh uv cache per test, so
the install really runs; holding the index keeps it under way while the test sends requests.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from devserver import DevServer
from localindex import LocalIndex, make_wheel

from fnserve.deps.progress import Note
from fnserve.server.devdeps import DepsGate, DevDeps
from fnserve.server.logs import install

PKG = "fnserve-tiny-pkg"
HANDLER = """from http.server import BaseHTTPRequestHandler

import fnserve_tiny_pkg


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = fnserve_tiny_pkg.VALUE.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
"""
EARLY_RE = re.compile(r"fnserve dev: installing (.+) first; (http://[0-9.]+:[0-9]+) answers 503")


def _project(tmp_path: Path, index: LocalIndex, requirement: str = PKG) -> Path:
    root = tmp_path / "project"
    (root / "api").mkdir(parents=True)
    (root / "public").mkdir()
    (root / "api" / "hello.py").write_text(HANDLER)
    (root / "public" / "index.html").write_text("<h1>home</h1>")
    (root / "requirements.txt").write_text(f"--index-url {index.url}\n{requirement}\n")
    return root


class InstallingDev(DevServer):
    """``fnserve dev`` whose start returns at the line printed before the install (the port is
    bound and answering), not at the URL line printed once the env is ready."""

    def start_installing(self, timeout: float = 20.0) -> str:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fnserve", "dev", str(self.project), *self.port_args, *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env, start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()
        line = self.wait_for_line(EARLY_RE.pattern, timeout=timeout)
        match = EARLY_RE.search(line)
        assert match is not None
        self.url = match.group(2)
        return match.group(1)


def _dev(tmp_path: Path, index: LocalIndex, *args: str, requirement: str = PKG) -> InstallingDev:
    make_wheel(tmp_path / "wheels", PKG)
    root = _project(tmp_path, index, requirement)
    return InstallingDev(root, tmp_path, "--install", "--no-detect-imports", *args,
                         env={"UV_CACHE_DIR": str(tmp_path / "uv-cache"), "NO_COLOR": "1"})


def test_port_is_bound_before_the_install_and_answers_503_installing_until_ready(tmp_path) -> None:
    with LocalIndex(tmp_path / "wheels") as index:
        index.hold()
        server = _dev(tmp_path, index)
        try:
            assert server.start_installing() == PKG
            c = httpx.Client(base_url=server.url, timeout=10)
            r = c.get("/api/hello")
            assert r.status_code == 503, r.text
            assert f"installing {PKG}" in r.json()["error"]["message"]
            assert int(r.headers["retry-after"]) >= 1
            page = c.get("/", headers={"accept": "text/html"})  # a static file too: nothing is served yet
            assert page.status_code == 503 and page.headers["content-type"].startswith("text/html")
            assert f"installing {PKG}" in page.text and "<meta http-equiv=refresh content=" in page.text
            assert c.get("/_fnserve/api/state").status_code == 200  # the dashboard answers meanwhile
            assert not any(line.startswith("fnserve dev: http") for line in server.lines)
            index.release()
            server.wait_for_line(r"^fnserve dev: http://", timeout=20)
            r = c.get("/api/hello")
            assert r.status_code == 200 and r.text == f"{PKG} 1.0", server.output()
            assert c.get("/").text == "<h1>home</h1>"
            out = server.output()
            assert f"deps: installing 1 requirement(s): {PKG}" in out
            assert f"deps: + {PKG}==1.0" in out and re.search(r"deps: resolved 1 package in", out), out
            assert out.index("answers 503") < out.index(f"+ {PKG}==1.0") < out.index("fnserve dev: http://")
        finally:
            index.release()
            server.stop()


def test_port_in_use_exits_2_at_once_without_installing(tmp_path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with LocalIndex(tmp_path / "wheels") as index:
            server = _dev(tmp_path, index)
            server.port_args = ("--port", str(port))
            started = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "fnserve", "dev", str(server.project), *server.port_args,
                                   *server.args], capture_output=True, text=True, env=server.env, timeout=20)
            assert proc.returncode == 2, proc.stderr + proc.stdout
            assert time.monotonic() - started < 10
            assert str(port) in proc.stdout + proc.stderr and "in use" in proc.stdout + proc.stderr
            assert index.requests == []  # uv never asked the index
            assert "installing" not in proc.stdout + proc.stderr
            envs = server.project / ".fnserve" / "envs"
            assert not envs.exists() or not [p for p in envs.iterdir() if p.is_dir()]
    finally:
        taken.close()


def test_json_log_format_progress_lines_are_json(tmp_path) -> None:
    with LocalIndex(tmp_path / "wheels") as index:
        server = _dev(tmp_path, index, "--log-format", "json")
        try:
            server.start_installing()
            server.wait_for_line(r'"fnserve dev: http://', timeout=20)
            assert httpx.get(server.url + "/api/hello", timeout=10).text == f"{PKG} 1.0"
            records = [json.loads(line) for line in server.lines if line.strip()]  # every line is JSON
            messages = [r["msg"] for r in records]
            assert f"deps: + {PKG}==1.0" in messages, messages
            assert any(m.startswith("deps: installed 1 package in") for m in messages), messages
        finally:
            server.stop()


def test_install_failure_keeps_serving_503_naming_the_requirement_then_a_fix_installs(tmp_path) -> None:
    with LocalIndex(tmp_path / "wheels") as index:
        server = _dev(tmp_path, index, requirement="fnserve-no-such-pkg")
        try:
            server.start_installing()
            server.wait_for_line(r"^fnserve dev: http://", timeout=20)
            c = httpx.Client(base_url=server.url, timeout=10)
            r = c.get("/api/hello")
            assert r.status_code == 503 and "retry-after" not in r.headers
            error = r.json()["error"]
            assert "fnserve-no-such-pkg" in error["message"] and "requirements.txt" in error["message"]
            assert "fix" in error.get("detail", "") + error["message"]
            assert c.get("/").text == "<h1>home</h1>"  # the project is served as far as it can be
            mark = len(server.lines)
            (server.project / "requirements.txt").write_text(f"--index-url {index.url}\n{PKG}\n")
            line = server.wait_for_line(r"new environment|error: dependencies", timeout=20, start=mark)
            assert "new environment" in line, server.output()
            r = c.get("/api/hello")
            assert r.status_code == 200 and r.text == f"{PKG} 1.0"
        finally:
            server.stop()


@pytest.mark.parametrize("accept", ["application/json", "text/html"])
def test_a_request_during_the_install_names_what_is_installed(tmp_path, accept) -> None:
    with LocalIndex(tmp_path / "wheels") as index:
        index.hold()
        server = _dev(tmp_path, index)
        try:
            server.start_installing()
            r = httpx.get(server.url + "/api/hello", headers={"accept": accept}, timeout=10)
            assert r.status_code == 503 and r.headers["retry-after"] and f"installing {PKG}" in r.text
            assert r.headers["content-type"].startswith(accept)
            assert r.headers["x-fnserve-request-id"]  # as every answer of the dev server has
        finally:
            index.release()
            server.stop()


async def _no_dispatch(function: object, scope: object, receive: object, send: object) -> None:
    raise AssertionError("no request is dispatched here")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_dev_install_progress_keeps_log_lines_above_a_live_line_on_a_terminal(tmp_path, log_format) -> None:
    out = _Terminal()
    logs = install(log_format, stream=out, dev=True)
    log = logging.getLogger("fnserve.dev")
    try:
        deps = DevDeps(tmp_path, {}, log.info, DepsGate(_no_dispatch), on_change=asyncio.sleep)
        deps.logs = logs
        with deps.install_progress() as progress:
            progress(Note("resolved 1 package in 1ms", "downloading and building what is not cached"))
            log.info("GET / 503 installing")
            live = logs.handler.stream is not out
        assert logs.handler.stream is out
    finally:
        logs.remove()
    text = out.getvalue()
    assert "deps: resolved 1 package in 1ms" in text and "GET / 503 installing" in text
    if log_format == "json":
        assert not live and "\x1b" not in text  # JSON lines only, no live line
        assert all(json.loads(line) for line in text.splitlines())
    else:
        assert live and "deps: downloading and building what is not cached" in text  # the spinner line
