"""Issue 14 item 1, the per-request costs removed from the front: one response observer (custom
headers, request id, runtime error answers), one write per response (``server.coalesce``), the
negative static cache, request ids without a system call, access lines written in batches, and
``upstream.forward`` telling the status (no failure-counting ``send`` wrapper in ``Leasing``)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from devserver import serve_app

from fnserve.project.pathpattern import PathPattern
from fnserve.project.types import Entry, EntryKind, Function, Layout, Route, RouteMatch, Segment
from fnserve.project.vercel_types import HeaderRule
from fnserve.server import static as static_module
from fnserve.server.app import FrontApp, Site
from fnserve.server.coalesce import FLUSH_AT, CoalescedWrites
from fnserve.server.frontdoor import FrontLimits, uvicorn_options
from fnserve.server.logs import ACCESS, BatchingStreamHandler, access_record
from fnserve.server.observe import Observed
from fnserve.server.rules import Rules
from fnserve.server.static import StaticFiles

FN = Function("api/x.py", Path("/p/api/x.py"), "api.x", Layout.VERCEL, Entry(EntryKind.HANDLER, "handler", 1),
              (Path("/p"),))


class OneRoute:
    def match(self, path: str) -> RouteMatch | None:
        if path.startswith("/api/x"):
            return RouteMatch(Route("/api/x", (Segment("literal", "api"), Segment("literal", "x")), FN), {}, "", path)
        return None


async def dispatcher(function: Function, scope: dict, receive: Any, send: Any) -> None:
    """A worker stand-in: /api/x/boom answers as the function runtime does for a handler that raised;
    /api/x/stream sends three chunks 50 ms apart; anything else one JSON body."""
    await receive()
    if scope["path"] == "/api/x/boom":
        body = json.dumps({"error": {"code": "function_error", "message": "the function raised ValueError: secret"}}).encode()
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        return
    if scope["path"] == "/api/x/stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"chunk%d\n" % i, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
        return
    body = json.dumps({"request_id": dict(scope["headers"]).get(b"x-request-id", b"").decode()}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"x-custom", b"from-app")]})
    await send({"type": "http.response.body", "body": body})


@contextmanager
def front_server(tmp_path: Path) -> Iterator[tuple[str, FrontApp]]:
    """``Observed`` + ``FrontApp`` on uvicorn with fnserve's HTTP protocol (as ``fnserve start``),
    on 127.0.0.1 port 0."""
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "hello.txt").write_text("hi")
    rules = Rules(headers=(HeaderRule(PathPattern.compile("/api/(.*)"), (("X-Custom", "rule"),)),))
    site = Site(routes=OneRoute(), rules=rules, static=StaticFiles(tmp_path / "public"))
    lines: list[tuple[str, int, str]] = []
    app = FrontApp(site, dispatcher, dev=False,
                   access_log=lambda scope, status, started, label: lines.append((scope["path"], status, label)))
    app.lines = lines  # type: ignore[attr-defined]  # for the tests below
    with serve_app(Observed(app, None, public_errors=True), **uvicorn_options(FrontLimits())) as url:
        yield url, app


def test_one_observer_adds_rule_headers_and_request_id_and_rewrites_runtime_errors(tmp_path: Path) -> None:
    with front_server(tmp_path) as (url, app), httpx.Client(base_url=url, timeout=10) as client:
        r = client.get("/api/x", headers={"x-request-id": "abc-123"})
        assert r.status_code == 200 and r.json() == {"request_id": "abc-123"}
        assert r.headers["x-custom"] == "rule"  # the vercel.json rule wins over the app's header
        assert r.headers["x-fnserve-request-id"] == "abc-123"
        r = client.get("/api/x/boom")
        assert r.status_code == 500 and r.headers["x-custom"] == "rule"
        rid = r.headers["x-fnserve-request-id"]
        assert re.fullmatch(r"[0-9a-f]{16}", rid)
        error = r.json()["error"]
        assert error["code"] == "FUNCTION_INVOCATION_FAILED" and error["request_id"] == rid
        assert "secret" not in r.text  # public errors: the exception's text stays in the log
        r = client.get("/hello.txt")
        assert r.text == "hi" and re.fullmatch(r"[0-9a-f]{16}", r.headers["x-fnserve-request-id"])
        assert [(p, s, label) for p, s, label in app.lines] == [  # type: ignore[attr-defined]
            ("/api/x", 200, "api/x.py"), ("/api/x/boom", 500, "api/x.py"), ("/hello.txt", 200, "static")]


def test_streamed_chunks_still_leave_as_they_are_sent(tmp_path: Path) -> None:
    """Coalescing writes per loop step does not hold a streamed body back until it ends."""
    with front_server(tmp_path) as (url, _app), httpx.Client(base_url=url, timeout=10) as client:
        with client.stream("GET", "/api/x/stream") as r:
            arrivals = []
            began = time.monotonic()
            for chunk in r.iter_raw():
                if chunk:
                    arrivals.append((time.monotonic() - began, chunk))
        assert b"".join(c for _, c in arrivals) == b"chunk0\nchunk1\nchunk2\n"
        # sent 50 ms apart: the first chunk arrived well before the last (it was not held until the end)
        assert len(arrivals) >= 2 and arrivals[-1][0] - arrivals[0][0] >= 0.05


def test_many_ids_are_distinct(tmp_path: Path) -> None:
    with front_server(tmp_path) as (url, _app), httpx.Client(base_url=url, timeout=10) as client:
        ids = {client.get("/api/x").headers["x-fnserve-request-id"] for _ in range(50)}
    assert len(ids) == 50 and all(re.fullmatch(r"[0-9a-f]{16}", i) for i in ids)


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str) -> str:
        return f"info:{name}"


def test_coalesced_writes_leave_once_per_loop_step() -> None:
    async def scenario() -> tuple[list[bytes], list[bytes], list[bytes], bool, str]:
        raw = FakeTransport()
        writes = CoalescedWrites(raw, asyncio.get_running_loop())  # type: ignore[arg-type]
        writes.write(b"HTTP/1.1 200 OK\r\n\r\n")
        writes.write(b"body")
        before = list(raw.writes)
        await asyncio.sleep(0)
        after_step = list(raw.writes)
        writes.write(b"x" * FLUSH_AT)  # big: at once
        big = list(raw.writes)
        writes.write(b"last")
        writes.close()  # flushes first
        return before, after_step, big, raw.closed, writes.get_extra_info("peername")

    before, after_step, big, closed, info = asyncio.run(scenario())
    assert before == [] and after_step == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    assert big[-1] == b"x" * FLUSH_AT and closed and info == "info:peername"


def test_absent_static_paths_are_remembered_for_a_while(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(static_module.time, "monotonic", lambda: now[0])
    stats: list[str] = []
    real_stat = static_module.os.stat
    monkeypatch.setattr(static_module.os, "stat", lambda p, *a, **k: (stats.append(str(p)), real_stat(p, *a, **k))[1])
    files = StaticFiles(tmp_path, absent_ttl=1.0)
    assert files.lookup("/new.txt") is None and len(stats) == 1
    assert files.lookup("/new.txt") is None and len(stats) == 1  # remembered: no stat()
    (tmp_path / "new.txt").write_text("x")
    assert files.lookup("/new.txt") is None  # within the TTL
    now[0] += 1.5
    hit = files.lookup("/new.txt")
    assert hit is not None and hit.file == (tmp_path / "new.txt").resolve()
    (tmp_path / "new.txt").unlink()
    assert files.lookup("/new.txt") is None  # found files are checked every time
    never = StaticFiles(tmp_path, absent_ttl=0)
    count = len(stats)
    never.lookup("/a")
    never.lookup("/a")
    assert len(stats) == count + 2


def test_absent_cache_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(static_module, "ABSENT_MAX", 10)
    files = StaticFiles(tmp_path)
    for i in range(25):
        files.lookup(f"/missing-{i}")
    assert len(files._absent) <= 10


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def write(self, text: str) -> int:
        self.calls += 1
        return super().write(text)


def test_access_lines_reach_the_stream_in_one_write_per_batch() -> None:
    """Even with an unbuffered stream (``PYTHONUNBUFFERED=1``): the handler holds the lines."""
    stream = CountingStream()
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))

    async def scenario() -> tuple[int, int]:
        for i in range(20):
            handler.handle(access_record(f"r{i}", "GET", "/", 200, 1.0, "-", None, None))
        early = stream.calls
        await asyncio.sleep(handler.FLUSH_DELAY * 3)
        return early, stream.calls

    early, later = asyncio.run(scenario())
    assert early == 0 and later == 1 and len(stream.getvalue().splitlines()) == 20
    warning = logging.LogRecord(ACCESS.name, logging.WARNING, __file__, 0, "careful", None, None)
    handler.handle(warning)
    assert stream.getvalue().endswith("careful\n")  # warnings at once
    handler.close()
