"""Front-door limits over real loopback servers, ``dev`` and ``start`` (issue 10 items 3-5)."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from frontdoor_support import DevServer, StartServer, exchange

WS_HEAD = (b"Host: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


@pytest.fixture(scope="module", params=["dev", "start"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    cls = DevServer if request.param == "dev" else StartServer
    srv = cls("frontdoor", tmp_path_factory.mktemp(request.param), *getattr(request, "server_args", ()))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _good(url: str) -> None:
    r = httpx.get(url + "/api/h/ok", timeout=10)
    assert r.status_code == 200 and r.headers["x-fixture"] == "1"


@pytest.mark.parametrize("line", [b"GET /api/h/x\r\n\r\n", b"GET /api/a/x\r\n\r\n", b"GET /api/h/x HTTP/0.9\r\n\r\n"])
def test_http09_and_versionless_request_lines_are_400(server: DevServer, line: bytes) -> None:
    reply = exchange(server.url, line)
    assert reply.status == 400, reply
    _good(server.url)


@pytest.mark.parametrize("date", ["Mon, 01 Jan 9999999999999999999 00:00:00 GMT", "Mon, 01 Jan 99999 00:00:00 GMT",
                                  "Tue, 31 Feb 2020 25:61:61 +9999", "garbage"])
def test_an_absurd_if_modified_since_is_ignored(server: DevServer, date: str) -> None:
    r = httpx.get(server.url + "/index.html", headers={"If-Modified-Since": date}, timeout=10)
    assert r.status_code == 200 and b"static ok" in r.content


def test_a_websocket_the_app_does_not_accept_is_403(server: DevServer) -> None:
    reply = exchange(server.url, b"GET /api/a/x?deny HTTP/1.1\r\n" + WS_HEAD)
    assert reply.status == 403, reply
    accepted = exchange(server.url, b"GET /api/a/x HTTP/1.1\r\n" + WS_HEAD + b"\x81\x82abcd" + bytes(
        a ^ b for a, b in zip(b"hi", b"ab")), timeout=5)
    assert accepted.status == 101 and b"hi" in accepted.data
    _good(server.url)


# ---------------------------------------------------------------- limits (items 3 and 4)
LIMIT_ARGS = ("--header-timeout", "1", "--body-timeout", "1", "--max-connections", "40")


@pytest.fixture(scope="module", params=["dev", "start"])
def limited(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    cls = DevServer if request.param == "dev" else StartServer
    srv = cls("frontdoor", tmp_path_factory.mktemp(request.param + "-limited"), *LIMIT_ARGS)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def _request(path: str, headers: bytes = b"", body: bytes = b"") -> bytes:
    return b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n" + body


@pytest.mark.parametrize(("headers", "status"), [
    (b"x-big: " + b"a" * (1 << 20) + b"\r\n", 431),               # a 1 MiB header
    (b"".join(b"x-h%d: 1\r\n" % i for i in range(50_000)), 431),  # 50,000 headers
    (b"".join(b"x-h%d: 1\r\n" % i for i in range(101)), 431),     # one over the count (Host and Connection too)
    (b"".join(b"x-h%d: 1\r\n" % i for i in range(97)), 200),      # 99 + Host, Connection: at the limit
    (b"x-big: " + b"a" * 60_000 + b"\r\n", 200),                  # under 64 KiB
    (b"x-big: " + b"a" * 70_000 + b"\r\n", 431),
])
def test_request_headers_are_bounded(limited: DevServer, headers: bytes, status: int) -> None:
    started = time.monotonic()
    reply = exchange(limited.url, _request("/api/h/x", headers))
    assert reply.status == status, reply.data[:200]
    assert time.monotonic() - started < 3
    _good(limited.url)


def test_a_60_mib_header_is_cut_off_without_stalling_other_requests(limited: DevServer) -> None:
    host, port = limited.url.removeprefix("http://").split(":")
    sent = 0
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /api/h/x HTTP/1.1\r\nHost: x\r\nx-big: ")
        piece = b"a" * (1 << 20)
        with contextlib.suppress(OSError):
            while sent < 60 << 20:
                s.sendall(piece)
                sent += len(piece)
                if sent == 4 << 20:  # meanwhile, another client is served at once
                    t0 = time.monotonic()
                    _good(limited.url)
                    assert time.monotonic() - t0 < 1
    assert sent < 60 << 20, "the server read a 60 MiB header to its end"
    assert time.monotonic() - started < 10
    _good(limited.url)


def test_slow_headers_get_408_and_a_silent_socket_is_closed(limited: DevServer) -> None:
    started = time.monotonic()
    reply = exchange(limited.url, b"GET /api/h/x HTTP/1.1\r\nHost: x\r\n", timeout=5)
    assert reply.status == 408 and reply.closed and time.monotonic() - started < 4
    silent = exchange(limited.url, b"", timeout=5)
    assert silent.data == b"" and silent.closed and not silent.timed_out
    _good(limited.url)


@pytest.mark.parametrize("path", ["/api/a/x", "/api/h/x"])
def test_a_stalled_body_gets_408_and_frees_the_function(limited: DevServer, path: str) -> None:
    started = time.monotonic()
    head = b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
    reply = exchange(limited.url, head, timeout=8)
    assert reply.status == 408 and reply.closed, reply
    assert time.monotonic() - started < 5
    if path == "/api/a/x":  # the handler class reads no chunked body (no Content-Length): it answers at once
        chunked = exchange(limited.url, b"POST " + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n", timeout=8)
        assert chunked.status == 408, chunked
    _good(limited.url)


def test_connections_over_the_cap_get_503_and_the_server_keeps_accepting(limited: DevServer) -> None:
    host, port = limited.url.removeprefix("http://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=5) for _ in range(45)]
    try:
        time.sleep(0.3)
        refused = 0
        for s in idle[-5:]:
            s.settimeout(2)
            with contextlib.suppress(OSError):
                if s.recv(100).startswith(b"HTTP/1.1 503"):
                    refused += 1
        assert refused == 5
    finally:
        for s in idle:
            s.close()
    time.sleep(0.3)
    _good(limited.url)


def test_a_slow_body_is_read_before_the_function_runs(server: DevServer) -> None:
    """The body trickles in for ~1 s; the function (which times its own body read) sees it whole."""
    pieces = [b"POST /api/a/x HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 6\r\n\r\nab"]
    host, port = server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(pieces[0])
        for part in (b"cd", b"ef"):
            time.sleep(0.5)
            s.sendall(part)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n")[0].lower()
    assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"read 6\n"), data
    read_ms = int(head.split(b"x-read-ms: ")[1].split(b"\r\n")[0])
    assert read_ms < 300, data
