"""The direct path at a later request boundary (issue 14 item 2; docs/ARCHITECTURE.md "direct
path: built"), end to end on a real ``fnserve start`` of ``tests/projects/direct_basic``.

A connection whose first request found its function cold (no ready instance with a free slot:
the router's ``Verdict.BUSY``) is served by the front, and offered to the direct path again at
each later request boundary (``FrontHttpProtocol._at_boundary``) until it is passed, or until a
request comes that the front must serve (a static file, another rule: ``Verdict.FRONT``; then
never again). What a client sees does not change: the answers equal those of a
``--no-direct-path`` server. Bytes the front's parser already took (pipelined behind a request
still being answered) are never passed; a handed-back connection is never passed again; the
connections instances hold count in ``max_connections``. ``fnserve_direct_connections_total``
shows which path served.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from startserver import StartServer, until
from test_direct_e2e import CASE, HANDED_BACK, PASSED, Answer, Conn, delta, metrics, request_bytes, served


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StartServer]:
    """A ``--no-direct-path`` server: the answers every request must get."""
    srv = StartServer(CASE, tmp_path_factory.mktemp("frames"), "--no-direct-path")
    try:
        srv.start()
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[..., StartServer]]:
    """``fresh(*args)``: a server of its own, every function cold."""
    servers: list[StartServer] = []

    def make(*args: str) -> StartServer:
        srv = StartServer(CASE, tmp_path / f"s{len(servers)}", *args)
        servers.append(srv)
        srv.start()
        return srv

    yield make
    for srv in servers:
        srv.stop()


def _passed(url: str, before: dict[str, float]) -> float:
    return delta(url, before, PASSED)


def test_a_connection_whose_function_was_cold_is_passed_at_its_next_request(
        fresh: Callable[..., StartServer], frames: StartServer) -> None:
    srv = fresh()
    before = metrics(srv.url)
    steps = [("POST", "/api/users/1?step=0", b"first body"), ("GET", "/api/users/1?step=1", b""),
             ("POST", "/api/users/1?step=2", b"x" * 3000), ("HEAD", "/api/users/1?step=3", b"")]
    expected_passed = [0, 1, 1, 1]  # the first finds the function cold; the second is passed with the connection
    with Conn(srv.url) as direct, Conn(frames.url) as front:
        for (method, target, body), want in zip(steps, expected_passed):
            headers = [("X-Request-Id", f"later-{target[-1]}")]
            got, ref = direct.request(method, target, headers, body), front.request(method, target, headers, body)
            assert got.status == 200 and got.header("x-echo") == "users", got
            assert got.comparable() == ref.comparable(), target
            assert _passed(srv.url, before) == want, target
    until(lambda: served(metrics(srv.url), "api/users/[id].py") - served(before, "api/users/[id].py") == 4,
          5.0, "4 requests counted (1 by the front, 3 reported by the instance)")


def test_pipelined_bytes_the_front_parsed_stay_on_the_front(fresh: Callable[..., StartServer]) -> None:
    srv = fresh()
    before = metrics(srv.url)
    with Conn(srv.url) as conn:
        # a slow first request (cold, then 0.5 s); the second arrives while it is answered: the
        # front's parser takes it, so it is answered by the front, in order
        conn.send(request_bytes("GET", "/api/asgi?sleep=0.5"))
        time.sleep(0.2)
        conn.send(request_bytes("GET", "/api/asgi?n=1"))
        assert [conn.read().body, conn.read().body] == [b"asgi /api/asgi?sleep=0.5", b"asgi /api/asgi?n=1"]
        assert _passed(srv.url, before) == 0
        # two requests in one write at a boundary: nothing of them was parsed, both go with the connection
        conn.send(request_bytes("GET", "/api/asgi?n=2") + request_bytes("GET", "/api/asgi?n=3"))
        assert [conn.read().body, conn.read().body] == [b"asgi /api/asgi?n=2", b"asgi /api/asgi?n=3"]
        assert _passed(srv.url, before) == 1
        assert conn.request("GET", "/api/asgi?n=4").body == b"asgi /api/asgi?n=4"
    assert _passed(srv.url, before) == 1


def test_a_later_head_in_pieces_is_held_then_passed_and_keeps_the_head_timeout(
        fresh: Callable[..., StartServer]) -> None:
    srv = fresh("--header-timeout", "1")
    before = metrics(srv.url)
    with Conn(srv.url) as conn:
        assert conn.request("GET", "/api/hello?n=0").body == b"handler /api/hello?n=0"  # cold: the front
        data = request_bytes("GET", "/api/hello?n=1", [("X-Request-Id", "pieces")])
        for start in range(0, len(data), 11):
            conn.send(data[start:start + 11])
            time.sleep(0.05)
        answer = conn.read()
        assert (answer.body, answer.header("x-fnserve-request-id")) == (b"handler /api/hello?n=1", "pieces")
    assert _passed(srv.url, before) == 1
    with Conn(srv.url) as conn:
        assert conn.request("GET", "/api/wsgi?n=0").status == 200  # another cold function: the front
        conn.send(b"GET /api/wsgi?n=1 HTTP/1.1\r\nHost: example.test\r\n")  # held at the boundary, never finished
        t0 = time.monotonic()
        assert conn.read().status == 408
        assert 0.5 < time.monotonic() - t0 < 5.0
        assert conn.closed(2.0)
    assert _passed(srv.url, before) == 1


def test_a_request_the_front_must_serve_ends_the_offers_and_a_handed_back_connection_stays(
        fresh: Callable[..., StartServer]) -> None:
    srv = fresh()
    before = metrics(srv.url)
    with Conn(srv.url) as conn:
        assert conn.request("GET", "/api/hello?n=0").body == b"handler /api/hello?n=0"  # cold: the front
        assert conn.request("GET", "/file.txt").body == b"a static file\n"  # the front's: no more offers
        for i in range(1, 4):
            assert conn.request("GET", f"/api/hello?n={i}").body == f"handler /api/hello?n={i}".encode()
        assert _passed(srv.url, before) == 0
    with Conn(srv.url) as conn:
        assert conn.request("GET", "/api/hello?m=0").body == b"handler /api/hello?m=0"  # warm: passed
        assert _passed(srv.url, before) == 1
        assert conn.request("GET", "/file.txt").body == b"a static file\n"  # handed back
        for i in range(1, 4):  # never passed again (no ping-pong)
            assert conn.request("GET", f"/api/hello?m={i}").body == f"handler /api/hello?m={i}".encode()
        assert _passed(srv.url, before) == 1
        assert delta(srv.url, before, HANDED_BACK) == 1


def _refused(url: str) -> bool:
    """A new connection to ``url`` gets the front's 503 before it sends anything."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        try:
            return sock.recv(100).startswith(b"HTTP/1.1 503")
        except (ConnectionResetError, TimeoutError):
            return False


def _metrics_when_under_the_cap(url: str) -> dict[str, float]:
    found: dict[str, float] = {}

    def read() -> bool:
        try:
            found.update(metrics(url))
        except httpx.HTTPError:
            return False
        return bool(found)
    until(read, 5.0, "the metrics, once under max-connections")
    return found


def _new_served_conn(url: str, target: str, keep: list[Conn]) -> bool:
    """Open a connection and send ``target``; True (the connection kept in ``keep``) when it was
    answered 200, False when the front refused it (closed)."""
    conn = Conn(url)
    try:
        answer: Answer = conn.request("GET", target)
    except (EOFError, ConnectionResetError):
        conn.close()
        return False
    if answer.status != 200:
        conn.close()
        return False
    keep.append(conn)
    return True


def test_connections_passed_to_instances_count_in_max_connections(fresh: Callable[..., StartServer]) -> None:
    srv = fresh("--max-connections", "3")
    before = metrics(srv.url)
    r = httpx.get(srv.url + "/api/hello?warm", timeout=30)
    assert r.status_code == 200
    conns: list[Conn] = []
    try:
        for i in range(2):
            until(lambda i=i: _new_served_conn(srv.url, f"/api/hello?c={i}", conns), 5.0, f"connection {i} served")
        assert _passed(srv.url, before) == 2  # 2 held by the instance + this one: within 3
        # (the metrics connection may still count for a moment after it closed)
        until(lambda: _new_served_conn(srv.url, "/api/hello?c=2", conns), 5.0, "a third connection served")
        assert len(conns) == 3  # passed: 3 held by the instance, none by the front
        assert _refused(srv.url)  # the front holds no connection of its own, yet this is one too many
        conns.pop(0).close()  # the instance lets it go: one fits again
        until(lambda: _new_served_conn(srv.url, "/api/hello?c=3", conns), 5.0,
              "a connection accepted once a passed one closed")
    finally:
        for conn in conns:
            conn.close()
    m = _metrics_when_under_the_cap(srv.url)
    assert m.get(PASSED, 0.0) - before.get(PASSED, 0.0) == 4


def _answer(sock: socket.socket) -> bytes:
    sock.settimeout(5)
    try:
        return sock.recv(1000)
    except (ConnectionResetError, TimeoutError):
        return b""


def test_a_connection_accepted_while_another_is_passed_is_not_counted_twice(
        fresh: Callable[..., StartServer]) -> None:
    """Review finding (task V): a passed connection was counted both by uvicorn's set (until its
    ``connection_lost``, a loop step later) and by the instances' count; a connection accepted in
    that step was refused 503 although only 2 of 2 were open (87 % of rounds)."""
    srv = fresh("--max-connections", "2")
    assert httpx.get(srv.url + "/api/hello?warm", timeout=30).status_code == 200
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    refused = 0
    for i in range(60):
        with socket.create_connection((host, int(port))) as a, socket.create_connection((host, int(port))) as c:
            a.sendall(request_bytes("GET", f"/api/hello?a={i}"))  # passed at once (warm, free slot)
            c.sendall(request_bytes("GET", f"/api/hello?c={i}"))
            assert _answer(a).startswith(b"HTTP/1.1 200")
            refused += _answer(c).startswith(b"HTTP/1.1 503")
        time.sleep(0.05)  # the instance sees both close and lets them go (X) before the next round
    # a round whose connections of the round before were still held may be refused rightly: a few at
    # most on a loaded machine; the bug refused most rounds
    assert refused <= 5, refused


def test_a_handed_back_connection_keeps_its_place_under_max_connections(fresh: Callable[..., StartServer]) -> None:
    """Review finding (task V): between an instance's hand-back and its new protocol, the
    connection was counted nowhere; a new client took its place and the established one got 503
    for the request it had already sent. Under ``--max-connections 1`` the handed-back connection
    must always be answered; the newcomer may be refused."""
    srv = fresh("--max-connections", "1")
    assert httpx.get(srv.url + "/api/hello?warm", timeout=30).status_code == 200
    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    rounds = 0
    for i in range(100):
        time.sleep(0.05)  # the last round's connections are let go
        with socket.create_connection((host, int(port))) as a:
            a.sendall(request_bytes("GET", f"/api/hello?r={i}"))
            if not _answer(a).startswith(b"HTTP/1.1 200"):
                continue  # the metrics connection was still open: refused, next round
            rounds += 1
            a.sendall(request_bytes("GET", "/file.txt"))  # static: the instance hands A back
            end = time.perf_counter() + (i % 16) * 0.0001  # the newcomer arrives 0 to 1.5 ms later
            while time.perf_counter() < end:
                pass
            with socket.create_connection((host, int(port))) as c:
                assert not _answer(a).startswith(b"HTTP/1.1 503"), f"round {i}: the handed-back connection refused"
                c.settimeout(0.2)
    assert rounds >= 80
