"""Front-door limits over real loopback servers, ``dev`` and ``start`` (issue 10 items 3-5)."""

from __future__ import annotations

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
