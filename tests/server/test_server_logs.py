"""``server.logs`` in memory: one record builder, one text and one JSON format for ``fnserve dev``
and ``fnserve start``, control characters of a path escaped in text, ``install``/``LogOutput``."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest

from fnserve.server.logs import ACCESS, ACCESS_FIELDS, JsonFormatter, TextFormatter, access_record, escape_path, install

ACCESS_KEYS = {"time", "level", "logger", "msg", *ACCESS_FIELDS}
FUNCTION_KEYS = {"time", "level", "logger", "msg", "function", "pid", "stream"}
MESSAGE_KEYS = {"time", "level", "logger", "msg"}


def _function_line(text: str) -> logging.LogRecord:
    record = logging.LogRecord("fnserve.function.api/x", logging.INFO, __file__, 0, "%s", (text,), None)
    record.function, record.pid, record.stream = "api/x.py", 77, "stdout"
    return record


def _emit_all(stream: io.StringIO, *, dev: bool) -> list[dict]:
    """The three kinds of record through ``install("json")`` as one command sets it up."""
    output = install("json", stream, dev=dev, route_of=lambda fid: "/api/x")
    try:
        ACCESS.handle(access_record("rid-1", "GET", "/api/x?a=1", 200, 1.5, "api/x.py", 12, False))
        logging.getLogger("fnserve.function.api/x").handle(_function_line("printed"))
        logging.getLogger("fnserve.dev" if dev else "fnserve.start").info("fnserve %s: http://127.0.0.1:1",
                                                                          "dev" if dev else "start")
        logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    finally:
        output.remove()
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_dev_and_start_write_one_json_schema() -> None:
    dev = _emit_all(io.StringIO(), dev=True)
    start = _emit_all(io.StringIO(), dev=False)
    assert [set(r) for r in dev] == [set(r) for r in start] == [ACCESS_KEYS, FUNCTION_KEYS, MESSAGE_KEYS, MESSAGE_KEYS]
    access, function, message, uvicorn = dev
    assert list(access) == ["time", "level", "logger", "msg", *ACCESS_FIELDS]  # the documented key order
    assert access | {"time": None} == {
        "time": None, "level": "info", "logger": "fnserve.access", "msg": "GET /api/x?a=1 200", "request_id": "rid-1",
        "method": "GET", "path": "/api/x?a=1", "status": 200, "duration_ms": 1.5, "function": "api/x.py",
        "instance": 12, "cold": False,
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", access["time"])
    assert (function["function"], function["pid"], function["stream"], function["msg"]) == ("api/x.py", 77, "stdout", "printed")
    assert message["msg"] == "fnserve dev: http://127.0.0.1:1" and message["logger"] == "fnserve.dev"
    assert (uvicorn["level"], uvicorn["logger"]) == ("warning", "uvicorn.error")


@pytest.mark.parametrize("raw, shown", [
    ("/api/x?y=1", "/api/x?y=1"),
    ("/nope\nFORGED 200", "/nope%0AFORGED%20200"),
    ("/a\x1b[31mred", "/a%1B[31mred"),
    ("/a\r\u2028b\x7f\x85", "/a%0D%E2%80%A8b%7F%C2%85"),
    ("/\u202eevil", "/%E2%80%AEevil"),  # a bidi override would reorder the terminal line
    ("/caf\u00e9/[id]", "/caf\u00e9/[id]"),  # printable: as is
])
def test_text_escapes_unprintable_path_characters(raw: str, shown: str) -> None:
    assert escape_path(raw) == shown
    record = access_record("r", "GET", raw, 404, 0.2, "-", None, None)
    for formatter in (TextFormatter(), TextFormatter(dev=True), TextFormatter(dev=True, colour=True)):
        line = formatter.format(record)
        assert f" GET {shown} " in line and "\n" not in line and "\r" not in line
        assert "\x1b[31mred" not in line
    assert json.loads(JsonFormatter().format(record))["path"] == raw  # JSON keeps the exact path, escaped by JSON


def test_text_layouts_of_dev_and_start() -> None:
    record = access_record("rid", "GET", "/api/x", 200, 3.25, "api/x.py", 77, False)
    assert re.fullmatch(r"\d\d:\d\d:\d\d GET /api/x 200 3\.2ms api/x\.py pid=77 warm id=rid", TextFormatter(dev=True).format(record))
    assert re.fullmatch(r"\S+Z GET /api/x 200 3\.2ms api/x\.py pid=77 warm id=rid", TextFormatter().format(record))
    no_id = access_record("-", "GET", "/", 0, 1.0, "-", None, None)
    assert TextFormatter(dev=True).format(no_id).endswith(" GET / --- 1.0ms -")
    line = _function_line("one\ntwo")
    assert TextFormatter(dev=True, route_of=lambda fid: "/api/x").format(line) == "[/api/x] one\n[/api/x] two"
    assert re.fullmatch(r"\S+Z \[api/x\.py 77\] one\n\S+Z \[api/x\.py 77\] two", TextFormatter().format(line))
    warning = logging.LogRecord("fnserve.start", logging.WARNING, __file__, 0, "careful", (), None)
    assert TextFormatter(dev=True).format(warning) == "warning: careful"
    assert re.fullmatch(r"\S+Z warning: careful", TextFormatter().format(warning))


def test_use_switches_the_format_and_exit_error_follows_it() -> None:
    stream, errors = io.StringIO(), io.StringIO()
    output = install("text", stream, dev=True)
    try:
        logging.getLogger("fnserve.dev").info("as text")
        output.use("json")
        logging.getLogger("fnserve.dev").info("as json")
        output.exit_error(logging.getLogger("fnserve.dev"), "port 1 is in use", stream=errors)
        output.use("text")
        try:
            raise RuntimeError("a bug")
        except RuntimeError as exc:
            output.exit_error(logging.getLogger("fnserve.dev"), "internal error", exc, stream=errors)
    finally:
        output.remove()
    first, second = stream.getvalue().splitlines()
    assert first == "as text" and json.loads(second)["msg"] == "as json"
    lines = errors.getvalue().splitlines()
    assert json.loads(lines[0]) | {"time": None} == {"time": None, "level": "error", "logger": "fnserve.dev",
                                                     "msg": "port 1 is in use"}
    assert lines[1] == "error: internal error" and lines[2].startswith("Traceback") and lines[-1] == "RuntimeError: a bug"


def test_remove_leaves_the_loggers_as_found() -> None:
    root_handlers = list(logging.getLogger().handlers)
    fnserve, uvicorn = logging.getLogger("fnserve"), logging.getLogger("uvicorn")
    before = [(fnserve.level, fnserve.propagate), (uvicorn.level, uvicorn.propagate)]
    output = install("text", io.StringIO())
    handler = output.handler
    assert handler in fnserve.handlers and handler in uvicorn.handlers
    assert (fnserve.level, fnserve.propagate, uvicorn.level) == (logging.INFO, False, logging.WARNING)
    output.remove()
    assert handler not in fnserve.handlers and handler not in uvicorn.handlers
    assert [(fnserve.level, fnserve.propagate), (uvicorn.level, uvicorn.propagate)] == before
    assert logging.getLogger().handlers == root_handlers
