"""Issue 13 item 4 over a real ``fnserve dev`` (port 0, httpx; stdout and stderr captured
together): one line per handler request by default, a load error's traceback once across
requests, NO_COLOR / FORCE_COLOR, ``--quiet``, ``--log-level warning``, a function's stdout and
stderr told apart, and the reload line naming the file and the cause."""

from __future__ import annotations

import re
import time
from pathlib import Path

import httpx
from devserver import DevServer

ANSI = re.compile(r"\x1b\[[0-9;]*m")

HELLO = '''from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hello")
'''
BOTH = '''import sys
from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        print("to-stdout", flush=True)
        print("to-stderr", file=sys.stderr, flush=True)
        self.send_response(204)
        self.end_headers()
'''
BROKEN = "import not_a_module_fnserve_terminal\n" + HELLO


class ColourDevServer(DevServer):
    """``DevServer`` that keeps the raw output (``raw``) and matches on it without ANSI codes."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.raw: list[str] = []

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self.raw.append(line.rstrip("\n"))
            self.lines.append(ANSI.sub("", line.rstrip("\n")))


def _project(tmp_path: Path, **files: str) -> Path:
    root = tmp_path / "proj"
    (root / "api").mkdir(parents=True)
    for name, text in {"hello": HELLO, **files}.items():
        (root / "api" / f"{name}.py").write_text(text)
    return root


def _serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None, **files: str) -> ColourDevServer:
    base = {"NO_COLOR": "", "FORCE_COLOR": ""}  # whatever the test runner's terminal says
    server = ColourDevServer(_project(tmp_path, **files), tmp_path, "--no-install", "--no-dashboard", *args,
                             env={**base, **(env or {})})
    server.start()
    return server


def _settle(server: DevServer, marker: str) -> None:
    """Wait until ``marker`` (an access line's path) is printed, then a little more for
    anything that would follow it (function output comes through another pipe)."""
    server.wait_for_line(re.escape(marker))
    time.sleep(0.3)


def test_one_line_per_handler_request_by_default_and_streams_marked(tmp_path: Path) -> None:
    server = _serve(tmp_path, both=BOTH)
    try:
        mark = len(server.lines)
        for _ in range(3):
            assert httpx.get(server.url + "/api/hello", timeout=15).text == "hello"
        assert httpx.get(server.url + "/api/both", timeout=15).status_code == 204
        _settle(server, "GET /api/both 204")
    finally:
        server.stop()
    lines = server.lines[mark:]
    about_hello = [x for x in lines if "/api/hello" in x]
    assert len(about_hello) == 3 and all(re.search(r"GET /api/hello 200 .*api/hello\.py", x) for x in about_hello)
    assert not any('"GET /api/hello HTTP/1.1"' in x for x in server.lines)  # the handler's own line: hidden
    assert "[/api/both] to-stdout" in lines and "[/api/both !] to-stderr" in lines
    assert "" not in lines  # no empty output line when workers stop


def test_handler_log_show_labels_the_line_as_the_functions_stderr(tmp_path: Path) -> None:
    server = _serve(tmp_path, "--handler-log", "show")
    try:
        httpx.get(server.url + "/api/hello", timeout=15)
        line = server.wait_for_line(r'"GET /api/hello HTTP/1\.1" 200')
    finally:
        server.stop()
    assert line.startswith("[/api/hello !] 127.0.0.1 - - [")


def test_load_error_traceback_once_across_requests(tmp_path: Path) -> None:
    server = _serve(tmp_path, broken=BROKEN)
    try:
        mark = len(server.lines)
        statuses = [httpx.get(server.url + "/api/broken", timeout=15).status_code for _ in range(3)]
        for _ in range(3):
            server.wait_for_line(r"GET /api/broken 500", start=mark)
        _settle(server, "GET /api/broken 500")
    finally:
        server.stop()
    assert statuses == [500, 500, 500]
    lines = server.lines[mark:]
    assert sum("Traceback (most recent call last)" in x for x in lines) == 1
    assert sum(x.strip() == "import not_a_module_fnserve_terminal" for x in lines) == 1  # the traceback's source line
    assert sum(bool(re.search(r"GET /api/broken 500 ", x)) for x in lines) == 3
    assert not any(x.startswith("warning: GET /api/broken") for x in lines)  # no per-request copy of the error


def test_force_color_colours_piped_output_and_no_color_wins(tmp_path: Path) -> None:
    forced = _serve(tmp_path / "a", env={"FORCE_COLOR": "1"})
    try:
        httpx.get(forced.url + "/api/hello", timeout=15)
        forced.wait_for_line("GET /api/hello 200")
    finally:
        forced.stop()
    url_line = next(x for x in forced.raw if "fnserve dev:" in x)
    assert "\x1b[1;36mhttp://127.0.0.1:" in url_line
    assert any("\x1b[32m200\x1b[0m" in x for x in forced.raw)
    plain = _serve(tmp_path / "b", env={"FORCE_COLOR": "1", "NO_COLOR": "1"})
    try:
        httpx.get(plain.url + "/api/hello", timeout=15)
        plain.wait_for_line("GET /api/hello 200")
    finally:
        plain.stop()
    assert not any("\x1b" in x for x in plain.raw)
    as_json = _serve(tmp_path / "c", "--log-format", "json", env={"FORCE_COLOR": "1"})
    as_json.stop()
    assert as_json.raw and not any("\x1b" in x or "\\u001b" in x for x in as_json.raw)


def test_quiet_shows_the_url_and_problems_only(tmp_path: Path) -> None:
    server = _serve(tmp_path, "--quiet", broken=BROKEN)
    try:
        assert httpx.get(server.url + "/api/hello", timeout=15).status_code == 200
        assert httpx.get(server.url + "/api/broken", timeout=15).status_code == 500
        server.wait_for_line(r"error: api/broken\.py failed to load")
        time.sleep(0.3)
    finally:
        server.stop()
    assert any(x.startswith("fnserve dev: http://") for x in server.lines)
    assert not any(re.search(r"GET /api/(hello|broken) ", x) for x in server.lines)  # no access lines
    assert not any(x.startswith("ROUTE") for x in server.lines)  # no route table


def test_log_level_warning_hides_info_and_access_lines(tmp_path: Path) -> None:
    server = _serve(tmp_path, "--log-level", "warning")
    try:
        mark = len(server.lines)
        assert httpx.get(server.url + "/api/hello", timeout=15).status_code == 200
        hello = server.project / "api" / "hello.py"
        hello.write_text(HELLO.replace("def do_GET(self):", "def do_GET(self)"))
        server.wait_for_line(r"warning: reload: api/hello\.py changed", start=mark, timeout=15)
    finally:
        server.stop()
    lines = server.lines[mark:]
    assert not any("GET /api/hello" in x for x in lines)
    assert not any("worker" in x and "ready in" in x for x in lines)  # info: hidden
    assert not any(x.startswith("ROUTE") for x in server.lines)


def test_reload_line_names_the_file_and_what_happened(tmp_path: Path) -> None:
    server = _serve(tmp_path)
    client = httpx.Client(base_url=server.url, timeout=15)
    hello = server.project / "api" / "hello.py"
    try:
        assert client.get("/api/hello").text == "hello"
        mark = len(server.lines)
        hello.write_text(HELLO.replace("def do_GET(self):", "def do_GET(self)"))
        broken = server.wait_for_line(r"reload: api/hello\.py changed", start=mark, timeout=15)
        assert client.get("/api/hello").status_code == 500
        mark = len(server.lines)
        hello.write_text(HELLO.replace(b"hello".decode(), "hello again"))
        fixed = server.wait_for_line(r"reload: api/hello\.py changed", start=mark, timeout=15)
        assert client.get("/api/hello").text == "hello again"
        mark = len(server.lines)
        (server.project / "requirements.txt").write_text("\n")
        deps = server.wait_for_line(r"reload: requirements\.txt changed", start=mark, timeout=15)
    finally:
        client.close()
        server.stop()
    assert re.fullmatch(r"warning: reload: api/hello\.py changed → api/hello\.py: syntax error: .* at line 5; "
                        r"its routes answer 500 until it is fixed \[\d+ ms\]", broken), broken
    assert re.fullmatch(r"reload: api/hello\.py changed → api/hello\.py (reloaded|ready in \d+ ms) "
                        r"\(syntax error fixed\) \[\d+ ms\]", fixed), fixed
    assert "requirements are not applied" in deps
    assert not any("environment changed" in x for x in server.lines)
