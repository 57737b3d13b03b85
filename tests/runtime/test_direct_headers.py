"""Response header validation on the direct path (``runtime.h1exchange.Exchange._head``): what the
frames path's uvicorn (httptools protocol) refuses in an app's response headers — its
``HEADER_RE`` in a name, ``HEADER_VALUE_RE`` in a value — the worker refuses too (``RuntimeError``,
nothing written, the connection dropped), and what the frames path lets through (HTAB and bytes
≥ 0x80 in values, ``str`` names and values as latin-1, bytes-like objects) it writes the same.

In memory on ``_head`` (every case, and random headers against uvicorn's two regexes), then a real
worker (tests/runtime/test_direct.py's ``Front``) serving tests/projects/direct_basic/api/badheader.py.
tests/server/test_direct_headers_e2e.py compares both paths of ``fnserve start``.
"""

from __future__ import annotations

import importlib.util
import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from ipc_support import make_project
from test_direct import Front, get, raw, responses
from uvicorn.protocols.http.httptools_impl import HEADER_RE, HEADER_VALUE_RE

from fnserve.runtime import h1exchange
from fnserve.runtime.h1exchange import Exchange

FIXTURE = Path(__file__).parent.parent / "projects" / "direct_basic" / "api" / "badheader.py"
_spec = importlib.util.spec_from_file_location("badheader_fixture", FIXTURE)
assert _spec is not None and _spec.loader is not None
badheader = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(badheader)
CASES: dict[str, tuple[Any, Any]] = badheader.CASES
# what the frames path does with each case (seen with two `fnserve start` servers; kept equal by
# tests/server/test_direct_headers_e2e.py): written, or the connection dropped without an answer
WRITTEN = {"ok", "tab", "high", "empty_name", "high_name", "str_name", "str_value", "bytearray_value"}
# ... or uvicorn's plain 500: what the frames path's worker or front cannot carry (bytes() refuses it, not latin-1)
UVICORN_500 = {"none_value", "nonlatin_value"}


def _exchange(headers: Any, status: int = 200, method: str = "GET") -> Exchange:
    """An ``Exchange`` with only what ``_head`` reads (no connection, no task)."""
    exchange = Exchange.__new__(Exchange)
    exchange.conn = SimpleNamespace(server=SimpleNamespace(date=b"date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"))  # type: ignore[assignment]
    exchange.scope = {"method": method}
    exchange.rid_line = b"x-fnserve-request-id: rid\r\n"
    exchange.keep_alive = True
    exchange.status = status
    exchange.headers = headers
    return exchange


def _uvicorn_accepts(headers: list[tuple[bytes, bytes]]) -> bool:
    return not any(HEADER_RE.search(name) or HEADER_VALUE_RE.search(value) for name, value in headers)


def test_the_patterns_are_uvicorns() -> None:
    assert h1exchange._BAD_NAME.pattern == HEADER_RE.pattern
    assert h1exchange._BAD_VALUE.pattern == HEADER_VALUE_RE.pattern


@pytest.mark.parametrize("case", list(CASES))
def test_each_case_is_written_or_refused_as_on_the_frames_path(case: str) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2"), CASES[case]]
    exchange = _exchange(headers)
    if case not in WRITTEN:
        with pytest.raises(RuntimeError, match="HTTP header|must be bytes") as raised:
            exchange._head()
        assert not exchange.on_wire  # nothing of this response was written: the caller drops the connection...
        assert isinstance(raised.value, h1exchange.UnwritableHeader) == (case in UVICORN_500)  # ... or answers 500
        return
    head = exchange._head()
    name, value = CASES[case]
    as_bytes = [item.encode("latin-1") if isinstance(item, str) else bytes(item) for item in (name, value)]
    assert head == (b"HTTP/1.1 200 OK\r\ndate: Thu, 01 Jan 2026 00:00:00 GMT\r\ncontent-type: text/plain\r\n"
                    b"content-length: 2\r\n%s: %s\r\nx-fnserve-request-id: rid\r\n\r\n" % (as_bytes[0].lower(), as_bytes[1]))


def test_the_error_names_the_header_and_what_is_wrong() -> None:
    with pytest.raises(RuntimeError, match=r"name b'x bad' .*whitespace"):
        _exchange([(b"x bad", b"v")])._head()
    with pytest.raises(RuntimeError, match=r"value b'a\\r\\nx: 1' for b'x-a' .*HTAB"):
        _exchange([(b"x-a", b"a\r\nx: 1")])._head()
    with pytest.raises(h1exchange.UnwritableHeader, match="must be bytes or latin-1 str, got \\(b'x-a', None\\)"):
        _exchange([(b"x-a", None)])._head()
    with pytest.raises(h1exchange.UnwritableHeader, match="not a length"):
        _exchange([(b"x-a", 10**12)])._head()  # as bytes() would take it: never allocated
    with pytest.raises(RuntimeError, match="a .name, value. pair"):
        _exchange([(b"x-a", b"1", b"2")])._head()


def test_a_value_cannot_forge_a_header_line_whatever_it_holds() -> None:
    """The joined check sees each header once: a NUL, CR or LF in a value never makes two valid lines."""
    for value in (b"a\r\nb\x00c", b"a\x00b", b"a\r\nx-b: c", b"a\nb\x00c\r\n", b"\r\n"):
        assert _uvicorn_accepts([(b"x-a", value)]) is False
        with pytest.raises(RuntimeError):
            _exchange([(b"x-a", value), (b"x-b", b"ok")])._head()


def test_random_headers_are_refused_exactly_when_uvicorn_refuses_them() -> None:
    rng = random.Random(14)
    alphabet = bytes(range(256))
    for _ in range(3000):
        headers = []
        for _ in range(rng.randint(1, 4)):
            name = bytes(rng.choice(b"abcxyz-" if rng.random() < 0.8 else alphabet) for _ in range(rng.randint(0, 6)))
            value = bytes(rng.choice(b"v1 ;=/" if rng.random() < 0.8 else alphabet) for _ in range(rng.randint(0, 8)))
            headers.append((name, value))
        exchange = _exchange(headers)
        try:
            exchange._head()
            written = True
        except RuntimeError:
            written = False
        assert written == _uvicorn_accepts(headers), headers


def test_the_common_case_costs_one_scan() -> None:
    """Headers an app usually sends: written as before (names lower-cased, values as given)."""
    head = _exchange([(b"Content-Type", b"application/json; charset=utf-8"), (b"Content-Length", b"0"),
                      (b"Set-Cookie", b"a=b; Path=/; HttpOnly"), (b"X-Quoted", b'"x", (y) <z>')], 204)._head()
    assert head.startswith(b"HTTP/1.1 204 No Content\r\ndate: ")
    assert b"\r\nset-cookie: a=b; Path=/; HttpOnly\r\nx-quoted: \"x\", (y) <z>\r\n" in head


# -- a real worker


@pytest.fixture(scope="module")
def badheader_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_project(tmp_path_factory.mktemp("badheader"), {"api/a.py": FIXTURE.read_text()})


def test_a_worker_drops_the_connection_for_a_refused_header_and_serves_the_others(
        badheader_project: Path, tmp_path: Path) -> None:
    with Front(badheader_project, tmp_path, "api/a.py") as front:
        for case in ("crlf", "nul", "space_name", "colon_name", "int_value"):
            out = raw(front.port, get(f"/api/a?case={case}") + get("/api/a?case=ok"))
            assert out == b"", (case, out)  # nothing written, the next request never served
        for case in ("none_value", "nonlatin_value"):
            (status, headers, body), = responses(raw(front.port, get(f"/api/a?case={case}") + get("/api/a?case=ok")))
            assert (status, body, headers[b"connection"]) == (500, b"Internal Server Error", b"close"), case
            assert b"x-fnserve-request-id" not in headers  # uvicorn writes this one itself, past the observer
        out = raw(front.port, get("/api/a?case=str_name") + get("/api/a?case=tab", b"connection: close\r\n"))
        (s1, h1, b1), (s2, h2, b2) = responses(out)
        assert (s1, h1[b"x-str"], b1) == (200, b"v", b"badheader str_name")
        assert (s2, h2[b"x-tab"], b2) == (200, b"a\tb", b"badheader tab")
        assert "Invalid HTTP header name b'x bad'" in front.log()
        statuses = sorted(row[3] for row in front.reports(9))
        assert statuses == [0] * 5 + [200, 200, 500, 500], statuses  # the dropped ones: no response
