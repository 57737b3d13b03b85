"""Raw-socket helpers for the front-door tests (issue 10 items 3-5 and the fuzz test): a
``fnserve dev`` or ``fnserve start`` on a copy of ``tests/projects/frontdoor`` and byte-exact
exchanges with it over loopback."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from devserver import DevServer
from startserver import StartServer

__all__ = ["DevServer", "Reply", "StartServer", "exchange", "response_complete", "status_of"]


@dataclass(frozen=True)
class Reply:
    """What came back: ``data`` (at most ``limit`` bytes), ``closed`` (the server closed or reset
    the connection), ``timed_out`` (nothing more within the timeout)."""

    data: bytes
    closed: bool
    timed_out: bool

    @property
    def status(self) -> int | None:
        """The status of the first response, None when no status line came back."""
        return status_of(self.data)

    @property
    def fixture(self) -> bool:
        """The first response came from the fixture's function (it marks hers ``x-fixture: 1``)."""
        head = self.data.split(b"\r\n\r\n", 1)[0].lower()
        return b"\r\nx-fixture: 1" in head


def status_of(data: bytes) -> int | None:
    if not data.startswith(b"HTTP/1."):
        return None
    try:
        return int(data[9:12])
    except ValueError:
        return None


def response_complete(data: bytes, head_only: bool = False) -> bool:
    """True when ``data`` holds one whole final response (after any 1xx interim ones): its head
    and, per its framing, its body (``head_only``: the request was HEAD). A 101 ends at its head;
    a response framed by the close (no length, not chunked) is never complete here."""
    while True:
        head, sep, rest = data.partition(b"\r\n\r\n")
        if not sep:
            return False
        status = status_of(head)
        if status is None:
            return False
        if 100 <= status < 200 and status != 101:
            data = rest
            continue
        if status in (101, 204, 304) or head_only:
            return True
        fields = {}
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            fields[name.strip().lower()] = value.strip().lower()
        if b"chunked" in fields.get(b"transfer-encoding", b""):
            return rest.endswith(b"0\r\n\r\n")
        if b"content-length" in fields:
            return len(rest) >= int(fields[b"content-length"])
        return False


def exchange(url: str, payload: bytes | list[bytes], *, timeout: float = 5.0, limit: int = 1 << 20,
             half_close: bool = False, one_response: bool = False, head_only: bool = False) -> Reply:
    """Connect to ``url`` (``http://127.0.0.1:port``), send ``payload`` (pieces sent one by one),
    read until the server closes, ``timeout`` s pass without data, ``limit`` bytes came, or
    (``one_response``) one whole response came (see ``response_complete``)."""
    host, port = url.removeprefix("http://").split(":")
    data = b""
    closed = timed_out = False
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        try:
            for piece in payload if isinstance(payload, list) else [payload]:
                s.sendall(piece)
            if half_close:
                s.shutdown(socket.SHUT_WR)
            while len(data) < limit:
                chunk = s.recv(65536)
                if not chunk:
                    closed = True
                    break
                data += chunk
                if one_response and response_complete(data, head_only):
                    break
        except TimeoutError:
            timed_out = True
        except (ConnectionResetError, BrokenPipeError):
            closed = True
    return Reply(data, closed, timed_out)
