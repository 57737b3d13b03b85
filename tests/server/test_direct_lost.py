"""A request lost with its instance on the direct path (issue 14 item 2; docs/ARCHITECTURE.md
"direct path: built"): the front answers on its copy of the client socket (``DirectRouter.lost``)
what the frames path answers for the same fault — ``date``, the request id the worker gave the
request (from the slot table: ``SlotWriter.describe`` / ``SlotTable.request``) in
``x-fnserve-request-id`` and in the body, the same headers and code — plus ``connection: close``;
its access line names the request (id, method, path, pid) as the frames path's does.

Real ``fnserve start`` servers on 127.0.0.1 port 0 (``pair``: direct path on / ``--no-direct-path``,
from tests/server/test_direct_e2e.py), raw sockets where the bytes matter; and ``DirectRouter.lost``
alone on a socket pair for the cases a server cannot reach on time (a stop's grace period, HEAD, no
record).
"""

from __future__ import annotations

import json
import re
import socket
import time

import pytest
from startserver import until
from test_direct_e2e import LOST, PASSED, Answer, Conn, Pair, delta, metrics, pair, request_bytes, served, warm
from test_direct_front import _router

from fnserve.errors import DurationExceeded, FnserveError, WorkerCrashed
from fnserve.server.metrics import Metrics
from fnserve.supervisor.slottable import SlotRequest

__all__ = ["pair"]  # the fixture, imported to be found here

HEX_ID = re.compile(r"[0-9a-f]{16}")
# the faults of tests/projects/direct_basic: path, the function's id, the status both paths answer
FAULTS = {
    "crash": ("/api/crash", "api/crash.py", 502),  # os._exit(1) inside the request
    "memory": ("/api/hog", "api/hog.py", 502),  # over its 128 MB: killed
    "wedged": ("/api/wedge?block=4", "api/wedge.py", 504),  # its loop blocked past maxDuration + 1 s: killed
}


def _ask(url: str, target: str, request_id: str | None, method: str = "GET") -> Answer:
    with Conn(url) as conn:
        return conn.request(method, target, [("X-Request-Id", request_id)] if request_id else [])


def _without(answer: Answer, *names: str) -> list[str]:
    return [n for n in answer.names() if n not in names]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_lost_request_gets_the_frames_paths_answer_with_date_and_request_id(pair: Pair, fault: str) -> None:
    path, function, status = FAULTS[fault]
    request_id = f"lost-{fault}"
    ok = path.partition("?")[0] + ("" if fault == "wedged" else "?ok=1")
    warm(pair.direct.url, ok)
    warm(pair.frames.url, ok)
    before = metrics(pair.direct.url)
    direct = _ask(pair.direct.url, path, request_id)
    frames = _ask(pair.frames.url, path, request_id)
    assert delta(pair.direct.url, before, PASSED) >= 1 and delta(pair.direct.url, before, LOST) >= 1
    assert (direct.status, frames.status) == (status, status), (direct, frames)
    # the same headers (the instance is gone: the front's copy of the connection is closed after the answer)
    assert _without(direct, "connection") == frames.names(), (direct.headers, frames.headers)
    assert direct.header("connection") == "close"
    assert direct.header("x-fnserve-request-id") == frames.header("x-fnserve-request-id") == request_id
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", direct.header("date") or ""), direct.headers
    for name in ("content-type", "cache-control", "x-fnserve-error"):
        assert direct.header(name) == frames.header(name), name
    mine, theirs = json.loads(direct.body)["error"], json.loads(frames.body)["error"]
    assert mine["code"] == theirs["code"] and mine["request_id"] == theirs["request_id"] == request_id
    # the front learns a crash's exit status before it answers here: "... (exit status 1)"
    assert mine["message"].startswith(theirs["message"])
    target = re.escape(path)
    pair.direct.wait_for_line(rf" GET {target} {status} [0-9.]+ms {re.escape(function)} pid=\d+ warm id={request_id}$",
                              timeout=3)
    pair.direct.wait_for_line(rf"warning: GET {re.escape(path.partition('?')[0])}: ", timeout=1)
    until(lambda: served(metrics(pair.direct.url), function, status) - served(before, function, status) >= 1,
          3, f"the {status} in fnserve_requests_total")


def test_a_lost_request_without_an_id_gets_the_one_its_worker_made(pair: Pair) -> None:
    """The worker made the id (no X-Request-Id): the front's answer and access line carry that id,
    and the access line's duration is the request's, not 0."""
    url = pair.direct.url
    warm(url, "/api/crash?ok=1")
    answer = _ask(url, "/api/crash?no-id=1", None)
    assert answer.status == 502, answer
    request_id = answer.header("x-fnserve-request-id") or ""
    assert HEX_ID.fullmatch(request_id) and json.loads(answer.body)["error"]["request_id"] == request_id
    line = pair.direct.wait_for_line(rf" GET /api/crash\?no-id=1 502 [0-9.]+ms api/crash\.py pid=\d+ warm "
                                     rf"id={request_id}$", timeout=3)
    assert float(re.search(r" ([0-9.]+)ms ", line).group(1)) > 0.0, line  # type: ignore[union-attr]


def test_a_lost_request_on_a_keep_alive_connection_names_that_request(pair: Pair) -> None:
    """The slot's record is the request in progress, not the connection's first one."""
    url = pair.direct.url
    warm(url, "/api/crash?ok=1")
    before = metrics(url)
    with Conn(url) as conn:
        assert conn.request("GET", "/api/crash?ok=1", [("X-Request-Id", "first-one")]).status == 200
        answer = conn.request("GET", "/api/crash?second=1", [("X-Request-Id", "second-one")])
    assert delta(url, before, PASSED) == 1
    assert answer.status == 502 and answer.header("x-fnserve-request-id") == "second-one", answer
    pair.direct.wait_for_line(r" GET /api/crash\?second=1 502 .* id=second-one$", timeout=3)


def test_instances_forked_from_one_zygote_make_different_request_ids(pair: Pair) -> None:
    """Each instance seeds its own id generator (runtime.h1conn: reseeded after fork): two
    instances forked from one zygote do not give their first direct requests the same id."""
    url = pair.direct.url
    warm(url, "/api/hello", "/api/asgi")  # two instances; their first requests went through the front
    before = metrics(url)
    ids = [_ask(url, path, None).header("x-fnserve-request-id") for path in ("/api/hello", "/api/asgi")]
    assert delta(url, before, PASSED) == 2
    assert all(HEX_ID.fullmatch(i or "") for i in ids) and ids[0] != ids[1], ids


def test_a_lost_head_request_gets_no_body(pair: Pair) -> None:
    """HEAD past maxDuration on a wedged instance: the front's 504 has the frames path's headers
    (content-length of the JSON it would send) and no body; the connection is closed."""
    warm(pair.direct.url, "/api/wedge")
    warm(pair.frames.url, "/api/wedge")
    answers = []
    for srv in (pair.direct, pair.frames):
        with Conn(srv.url) as conn:
            conn.send(request_bytes("HEAD", "/api/wedge?block=4", [("X-Request-Id", "lost-head")]))
            answers.append(conn.read("HEAD"))
            if srv is pair.direct:
                assert conn.closed(3.0)
    direct, frames = answers
    assert direct.status == frames.status == 504 and direct.body == frames.body == b"", answers
    assert direct.header("content-length") == frames.header("content-length")
    assert _without(direct, "connection") == frames.names()
    pair.direct.wait_for_line(r" HEAD /api/wedge\?block=4 504 .* id=lost-head$", timeout=3)


# ---------------------------------------------------------------------------------------------
# DirectRouter.lost alone


def _lost(request: SlotRequest | None, exc: FnserveError, *, closing: bool = False,
          metrics_: Metrics | None = None) -> tuple[bytes, dict[str, str], bytes]:
    _sup, router = _router(metrics_)
    router.closing = closing
    front, client = socket.socketpair()
    router.lost(front, "api/a.py", exc, request, 4242)
    data = b""
    while chunk := client.recv(65536):
        data += chunk
    client.close()
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode("latin-1").partition(": ")
        assert name not in headers, name
        headers[name] = value
    return status_line, headers, body


def test_lost_answers_with_the_workers_request_id_and_logs_the_request(caplog: pytest.LogCaptureFixture) -> None:
    metrics_ = Metrics()
    started = time.monotonic_ns() - 250_000_000  # 0.25 s ago
    request = SlotRequest("abc-123", "POST", "/api/a?x=1", started)
    with caplog.at_level("INFO", logger="fnserve.access"):
        status_line, headers, body = _lost(request, WorkerCrashed("api/a.py", exit_status=1), metrics_=metrics_)
    assert status_line == b"HTTP/1.1 502 Bad Gateway"
    assert list(headers) == ["date", "content-type", "content-length", "cache-control", "x-fnserve-error",
                             "x-fnserve-request-id", "connection"]
    assert headers["x-fnserve-request-id"] == "abc-123" and headers["connection"] == "close"
    assert json.loads(body)["error"] == {"code": "NO_RESPONSE_FROM_FUNCTION", "request_id": "abc-123",
                                         "message": "the worker of api/a.py died while serving the request "
                                                    "(exit status 1)"}
    assert int(headers["content-length"]) == len(body)
    (record,) = [r for r in caplog.records if r.name == "fnserve.access"]
    fields = record.__dict__
    assert (fields["request_id"], fields["method"], fields["path"], fields["status"], fields["function"],
            fields["instance"], fields["cold"]) == ("abc-123", "POST", "/api/a?x=1", 502, "api/a.py", 4242, False)
    assert 250.0 <= fields["duration_ms"] < 10_000.0
    assert any(r.name == "fnserve.error" and r.getMessage().startswith("POST /api/a: the worker of api/a.py died")
               for r in caplog.records)
    assert metrics_.requests[("api/a.py", 502)] == 1 and metrics_.direct["lost"] == 1


def test_lost_without_a_record_makes_a_fresh_id() -> None:
    """A worker killed between its slot's ``start`` and ``describe`` (or an old one) left no record."""
    status_line, headers, body = _lost(SlotRequest(None, None, None, time.monotonic_ns()),
                                       DurationExceeded("api/a.py", 2.0))
    assert status_line == b"HTTP/1.1 504 Gateway Timeout"
    assert HEX_ID.fullmatch(headers["x-fnserve-request-id"])
    assert json.loads(body)["error"]["request_id"] == headers["x-fnserve-request-id"]
    status_line, headers, body = _lost(None, DurationExceeded("api/a.py", 2.0))
    assert HEX_ID.fullmatch(headers["x-fnserve-request-id"]) and "date" in headers


def test_lost_head_request_has_no_body() -> None:
    status_line, headers, body = _lost(SlotRequest("h1", "HEAD", "/api/a", time.monotonic_ns()),
                                       WorkerCrashed("api/a.py"))
    assert status_line == b"HTTP/1.1 502 Bad Gateway" and body == b"" and int(headers["content-length"]) > 0


def test_lost_while_stopping_answers_the_cut_off_503() -> None:
    """Killed at the end of the stop's grace period: ``server.observe``'s 503 (no request id in the
    body, as there), with the id header, ``retry-after`` and ``connection: close``."""
    status_line, headers, body = _lost(SlotRequest("stop-1", "GET", "/api/a", time.monotonic_ns()),
                                       WorkerCrashed("api/a.py"), closing=True)
    assert status_line == b"HTTP/1.1 503 Service Unavailable"
    assert headers["retry-after"] == "1" and headers["connection"] == "close"
    assert headers["x-fnserve-request-id"] == "stop-1" and "date" in headers
    assert json.loads(body) == {"error": {"code": "SHUTTING_DOWN", "message": "the server stopped before this "
                                          "request finished (its grace period was over); retry it"}}
