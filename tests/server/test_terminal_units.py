"""Issue 13 item 4 in memory: the colour decision (NO_COLOR / FORCE_COLOR / TTY), what the text
format styles, stdout vs stderr of a function, how much ``install`` shows (``log_level``,
``quiet``, ``access_log``), ``announce`` and ``speaker``, the reload line and a handler class's
per-request line (``HandlerAdapter(log_requests=False)``)."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
import runtime_harness as H

from fnserve.config import load_config
from fnserve.project.types import Problem
from fnserve.runtime.handler import HandlerAdapter
from fnserve.runtime.pool import make_pool
from fnserve.server.logs import ACCESS, JsonFormatter, TextFormatter, access_record, announce, install, speaker
from fnserve.server.reloader import ReloadFacts, reload_line
from fnserve.server.terminal import use_colour
from fnserve.supervisor.output import LineSplitter
from fnserve.supervisor.target import WorkerTarget, restart_reason

ESC = "\x1b["


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


# ------------------------------------------------------------------ colour decision


@pytest.mark.parametrize("tty, environ, expected", [
    (True, {}, True),
    (False, {}, False),
    (True, {"NO_COLOR": "1"}, False),
    (True, {"NO_COLOR": "0"}, False),  # any non-empty value
    (True, {"NO_COLOR": ""}, True),  # empty: as if unset (no-color.org)
    (False, {"FORCE_COLOR": "1"}, True),
    (False, {"FORCE_COLOR": "yes"}, True),
    (True, {"FORCE_COLOR": "0"}, False),
    (True, {"FORCE_COLOR": "false"}, False),
    (False, {"FORCE_COLOR": "1", "NO_COLOR": "1"}, False),  # NO_COLOR wins (as CPython's own rule)
    (True, {"TERM": "dumb"}, False),
    (False, {"TERM": "dumb", "FORCE_COLOR": "1"}, True),
])
def test_use_colour(tty: bool, environ: dict[str, str], expected: bool) -> None:
    assert use_colour(_Stream(tty), environ) is expected


def test_use_colour_without_isatty_is_no() -> None:
    assert use_colour(object(), {}) is False


# ------------------------------------------------------------------ text format


def _output_line(stream: str, text: str = "hi", pid: int = 7) -> logging.LogRecord:
    record = logging.LogRecord("fnserve.function.api/x", logging.INFO, __file__, 0, "%s", (text,), None)
    record.function, record.pid, record.stream = "api/x.py", pid, stream
    return record


def test_stdout_and_stderr_of_a_function_are_told_apart() -> None:
    dev = TextFormatter(dev=True, route_of=lambda fid: "/api/x")
    assert dev.format(_output_line("stdout")) == "[/api/x] hi"
    assert dev.format(_output_line("stderr")) == "[/api/x !] hi"
    assert TextFormatter().format(_output_line("stderr")).endswith(" [api/x.py 7 !] hi")
    assert TextFormatter().format(_output_line("stdout")).endswith(" [api/x.py 7] hi")
    coloured = TextFormatter(dev=True, colour=True, route_of=lambda fid: "/api/x")
    out, err = coloured.format(_output_line("stdout")), coloured.format(_output_line("stderr"))
    assert out == "\x1b[35m[/api/x]\x1b[0m hi" and err == "\x1b[31m[/api/x !]\x1b[0m hi"
    assert json.loads(JsonFormatter().format(_output_line("stderr")))["stream"] == "stderr"


def _message(level: int, msg: str = "careful", **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("fnserve.dev", level, __file__, 0, msg, (), None)
    record.__dict__.update(extra)
    return record


def test_warnings_errors_and_the_url_are_styled_only_with_colour() -> None:
    plain, coloured = TextFormatter(dev=True), TextFormatter(dev=True, colour=True)
    assert plain.format(_message(logging.WARNING)) == "warning: careful"
    assert plain.format(_message(logging.ERROR)) == "error: careful"
    assert coloured.format(_message(logging.WARNING)) == "\x1b[1;33mwarning:\x1b[0m careful"
    assert coloured.format(_message(logging.ERROR)) == "\x1b[1;31merror:\x1b[0m careful"
    assert coloured.format(_message(logging.INFO)) == "careful"
    url = _message(logging.INFO, "fnserve dev: http://127.0.0.1:1", url="http://127.0.0.1:1")
    assert plain.format(url) == "fnserve dev: http://127.0.0.1:1"
    assert coloured.format(url) == "fnserve dev: \x1b[1;36mhttp://127.0.0.1:1\x1b[0m"
    access = access_record("r", "GET", "/", 503, 1.0, "api/x.py", None, None)
    assert "\x1b[31m503\x1b[0m" in coloured.format(access) and ESC not in plain.format(access)


def test_json_never_has_colour_even_when_forced() -> None:
    stream = _Stream(True)
    output = install("json", stream, dev=True, environ={"FORCE_COLOR": "1"})
    try:
        ACCESS.handle(access_record("r", "GET", "/", 500, 1.0, "-", None, None))
        logging.getLogger("fnserve.dev").warning("careful")
        announce(logging.getLogger("fnserve.dev"), "fnserve dev: %s", "http://127.0.0.1:1")
        logging.getLogger("fnserve.function.api/x").handle(_output_line("stderr"))
    finally:
        output.remove()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and all(json.loads(line) for line in lines)
    assert ESC not in stream.getvalue() and "\\u001b" not in stream.getvalue()
    assert json.loads(lines[2])["msg"] == "fnserve dev: http://127.0.0.1:1"


def test_install_colours_a_tty_unless_no_color() -> None:
    for environ, coloured in (({}, True), ({"NO_COLOR": "1"}, False)):
        stream = _Stream(True)
        output = install("text", stream, dev=True, environ=environ)
        try:
            logging.getLogger("fnserve.dev").warning("careful")
        finally:
            output.remove()
        assert (ESC in stream.getvalue()) is coloured


# ------------------------------------------------------------------ how much is shown


def _emit_everything() -> None:
    log = logging.getLogger("fnserve.dev")
    log.debug("a debug line")
    log.info("an info line")
    log.warning("a warning line")
    log.error("an error line")
    if ACCESS.isEnabledFor(logging.INFO):  # as observe.log_access does
        ACCESS.handle(access_record("r", "GET", "/acc", 200, 1.0, "-", None, None))
    logging.getLogger("fnserve.function.api/x").handle(_output_line("stdout", "printed"))
    announce(log, "fnserve dev: %s", "http://127.0.0.1:9")


def _shown(**options: Any) -> str:
    stream = io.StringIO()
    output = install("text", stream, dev=True, **options)
    try:
        _emit_everything()
    finally:
        output.remove()
    return stream.getvalue()


@pytest.mark.parametrize("options, shown, hidden", [
    ({}, ["an info line", "a warning line", "an error line", "GET /acc", "printed", "http://"], ["a debug line"]),
    ({"level": "debug"}, ["a debug line", "an info line", "GET /acc", "printed"], []),
    ({"level": "warning"}, ["a warning line", "an error line", "printed", "http://"], ["an info line", "GET /acc"]),
    ({"level": "error"}, ["an error line", "printed", "http://"], ["a warning line", "an info line", "GET /acc"]),
    ({"quiet": True}, ["a warning line", "an error line", "printed", "http://"], ["an info line", "GET /acc"]),
    ({"quiet": True, "level": "debug"}, ["a warning line"], ["a debug line", "an info line", "GET /acc"]),
    ({"access": False}, ["an info line", "printed", "http://"], ["GET /acc"]),
])
def test_log_level_quiet_and_access(options: dict[str, Any], shown: list[str], hidden: list[str]) -> None:
    text = _shown(**options)
    for piece in shown:
        assert piece in text, (piece, text)
    for piece in hidden:
        assert piece not in text, (piece, text)


def test_a_quiet_handler_still_feeds_other_handlers_every_message() -> None:
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    keep = Keep()
    output = install("text", io.StringIO(), quiet=True)
    logging.getLogger("fnserve").addHandler(keep)  # as the dashboard's feed does
    try:
        logging.getLogger("fnserve.dev").info("for the dashboard")
    finally:
        logging.getLogger("fnserve").removeHandler(keep)
        output.remove()
    assert seen == ["for the dashboard"]


def test_speaker_logs_error_and_warning_lines_at_their_level() -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("fnserve.test_speaker")
    keep = Keep()
    logger.addHandler(keep)
    logger.setLevel(logging.INFO)
    try:
        say = speaker(logger)
        say("error: vercel.json: bad")
        say("warning: careful")
        say("route table\nline 2")
    finally:
        logger.removeHandler(keep)
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.ERROR, "vercel.json: bad"), (logging.WARNING, "careful"), (logging.INFO, "route table\nline 2")]
    assert TextFormatter(dev=True).format(records[0]) == "error: vercel.json: bad"  # the same text as before


# ------------------------------------------------------------------ settings


def test_terminal_settings_and_their_defaults(tmp_path: Path) -> None:
    dev = load_config(tmp_path, {}, {}, mode="dev")
    start = load_config(tmp_path, {}, {}, mode="start")
    assert (dev.log_level, dev.quiet, dev.access_log, dev.handler_log) == ("info", False, True, "hide")
    assert start.handler_log == "show"  # production keeps the function's own output as it was
    flags = load_config(tmp_path, {"log_level": "warning", "quiet": True, "access_log": False, "handler_log": "show"},
                        {"FNSERVE_LOG_LEVEL": "error"}, mode="dev")
    assert (flags.log_level, flags.quiet, flags.access_log, flags.handler_log) == ("warning", True, False, "show")
    assert flags.sources["log_level"] == "--log-level"
    from fnserve.errors import ConfigError

    with pytest.raises(ConfigError, match="log_level"):
        load_config(tmp_path, {}, {"FNSERVE_LOG_LEVEL": "loud"}, mode="dev")


# ------------------------------------------------------------------ reload line


def _target(spec: dict[str, Any] | None = None, env: dict[str, str] | None = None, python: str = "/py") -> WorkerTarget:
    return WorkerTarget("api/x.py", spec or {"path": "/p/api/x.py", "kind": "handler", "body_limit": 1},
                        python=Path(python), env=env or {})


def test_restart_reason() -> None:
    base = _target()
    assert restart_reason(None, base) == "code"
    assert restart_reason(base, _target({"path": "/p/api/x.py", "kind": None, "body_limit": 1})) == "code"
    assert restart_reason(base, _target(python="/other")) == "python"
    assert restart_reason(base, _target(env={"A": "1"})) == "environment"
    assert restart_reason(base, _target({"path": "/p/api/x.py", "kind": "handler", "body_limit": 2})) == "settings"


@dataclass
class _Result:
    ready_ms: float | None = None
    error: Any = None


SYNTAX = Problem("error", "syntax error: expected ':'", "api/app.py", 8)


@pytest.mark.parametrize("facts, line", [
    (ReloadFacts("api/app.py", results={"api/app.py": _Result(41)}, ms=55),
     "reload: api/app.py changed → api/app.py ready in 41 ms [55 ms]"),
    (ReloadFacts("api/app.py", changed={"api/app.py": "code"}, file_errors_now={"api/app.py": SYNTAX}, ms=12),
     "warning: reload: api/app.py changed → api/app.py: syntax error: expected ':' at line 8; its routes answer 500 "
     "until it is fixed [12 ms]"),
    (ReloadFacts("api/app.py", changed={"api/app.py": "code"}, file_errors_before={"api/app.py": SYNTAX}, ms=52),
     "reload: api/app.py changed → api/app.py reloaded (syntax error fixed) [52 ms]"),
    (ReloadFacts("api/app.py", results={"api/app.py": _Result(40)}, load_errors_before={"api/app.py": "boom"}, ms=9),
     "reload: api/app.py changed → api/app.py ready in 40 ms (load error fixed) [9 ms]"),
    (ReloadFacts("api/app.py", results={"api/app.py": _Result(error="ImportError: no\ntraceback")}, ms=9),
     "warning: reload: api/app.py changed → api/app.py FAILED to load: ImportError: no [9 ms]"),
    (ReloadFacts("api/app.py", results={"api/app.py": None}, ms=3),
     "reload: api/app.py changed → api/app.py (idle, loads on next request) [3 ms]"),
    (ReloadFacts(".env", changed={"api/a.py": "environment", "api/b.py": "environment"}, ms=80),
     "reload: .env changed → environment changed for api/a.py, api/b.py: new instances get it [80 ms]"),
    (ReloadFacts("requirements.txt", deps="installing dependencies in the background", ms=8),
     "reload: requirements.txt changed → installing dependencies in the background [8 ms]"),
    (ReloadFacts("api/new.py", changed={"api/new.py": "code"}, added=["api/new.py"], ms=5),
     "reload: api/new.py changed → new function api/new.py [5 ms]"),
    (ReloadFacts("api/new.py", added=["api/new.py"], file_errors_now={"api/new.py": SYNTAX}, ms=5),
     "warning: reload: api/new.py changed → new function api/new.py (syntax error: expected ':' at line 8; its routes "
     "answer 500 until it is fixed) [5 ms]"),
    (ReloadFacts("api/app.py", changed={"api/app.py": "code"}, file_errors_before={"api/app.py": SYNTAX},
                 file_errors_now={"api/app.py": SYNTAX}, ms=5),
     "warning: reload: api/app.py changed → api/app.py: still syntax error: expected ':' at line 8; its routes answer "
     "500 until it is fixed [5 ms]"),
    (ReloadFacts("vercel.json", problem="configuration error: vercel.json: bad", ms=5),
     "warning: reload: vercel.json changed → ERROR: configuration error: vercel.json: bad [5 ms]"),
])
def test_reload_line_names_the_file_and_the_cause(facts: ReloadFacts, line: str) -> None:
    assert reload_line(facts) == line
    assert "environment changed" not in line or facts.what == ".env"


# ------------------------------------------------------------------ a handler class's own line


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"hi")


class _OwnLog(_Hello):
    def log_message(self, format: str, *args: Any) -> None:
        import sys

        sys.stderr.write("own: " + format % args + "\n")


def _stderr_of(handler_class: type[BaseHTTPRequestHandler], log_requests: bool, capsys: Any) -> str:
    adapter = HandlerAdapter(handler_class, executor=make_pool(1, "t"), log_requests=log_requests)
    status, _, body, _ = H.call(adapter, H.http_scope(path="/x"))
    assert (status, body) == (200, b"hi")
    return capsys.readouterr().err


def test_handler_request_line_hidden_at_the_source(capsys: Any) -> None:
    assert '"GET /x HTTP/1.1" 200' in _stderr_of(_Hello, True, capsys)
    assert _stderr_of(_Hello, False, capsys) == ""
    assert "own: " in _stderr_of(_OwnLog, False, capsys)  # a class with its own logging keeps it
    assert _Hello.log_request is BaseHTTPRequestHandler.log_request  # per instance: the class is left as written


def test_line_splitter_logs_no_empty_line_after_the_last_newline() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\n") == ["one"]
    assert splitter.feed(b"two\n\nthree\n") == ["two", "", "three"]
    assert splitter.end() == []  # was [""]: an empty "[fn]" line when every worker stopped
    assert splitter.feed(b"tail") == [] and splitter.end() == ["tail"]
