"""Response headers an app should not send (tests/projects/direct_basic/api/badheader.py), through
a real ``fnserve start`` with the direct path on and with ``--no-direct-path`` (``pair``, from
tests/server/test_direct_e2e.py): each case ends the same on both — written (the same status, body
and headers), or the connection dropped with nothing written (uvicorn's ``RuntimeError`` on the
frames path, ``runtime.h1exchange``'s on the direct path). tests/runtime/test_direct_headers.py has
the worker's side in detail."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from test_direct_e2e import PASSED, Answer, Conn, Pair, delta, metrics, pair, warm

__all__ = ["pair"]  # the fixture, imported to be found here

FIXTURE = Path(__file__).parent.parent / "projects" / "direct_basic" / "api" / "badheader.py"


def _cases() -> list[str]:
    spec = importlib.util.spec_from_file_location("badheader_cases", FIXTURE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.CASES)


def _outcome(url: str, case: str) -> tuple[object, ...]:
    """What a client sees: the answer (comparable part) and the next request's status on the same
    connection, or "dropped" when the server closed the connection without a byte."""
    with Conn(url, timeout=5) as conn:
        try:
            answer: Answer = conn.request("GET", f"/api/badheader?case={case}")
        except (EOFError, ConnectionResetError):
            return ("dropped", conn.buf)
        try:
            return answer.comparable(), conn.request("GET", "/api/badheader").status
        except (EOFError, ConnectionResetError):
            return answer.comparable(), "closed"  # EOF or reset: the same to a client


def test_bad_response_headers_end_the_same_on_both_paths(pair: Pair) -> None:
    for srv in (pair.direct, pair.frames):
        warm(srv.url, "/api/badheader")
    before = metrics(pair.direct.url)
    cases = _cases()
    seen = {case: (_outcome(pair.direct.url, case), _outcome(pair.frames.url, case)) for case in cases}
    assert delta(pair.direct.url, before, PASSED) == len(cases)  # every one went direct
    differ = {case: both for case, both in seen.items() if both[0] != both[1]}
    assert not differ, differ
    dropped = {case for case, (direct, _frames) in seen.items() if direct[0] == "dropped"}
    assert {"crlf", "lf", "nul", "space_name", "colon_name", "str_name"} & dropped == {
        "crlf", "lf", "nul", "space_name", "colon_name"}
    pair.direct.wait_for_line(r"Invalid HTTP header name b'x bad' in the response", timeout=3)
