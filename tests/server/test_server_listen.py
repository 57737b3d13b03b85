"""``server.listen.bind``: the sockets of ``fnserve dev`` and ``fnserve start``."""

from __future__ import annotations

import socket

import pytest

from fnserve.errors import FnserveError
from fnserve.server.listen import bind


def test_bind_port_zero_listens_without_blocking() -> None:
    sock = bind("127.0.0.1", 0)
    try:
        port = sock.getsockname()[1]
        assert port > 0 and sock.getblocking() is False
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # the kernel accepts into the backlog: it listens
    finally:
        sock.close()


def test_bind_port_in_use_says_what_to_do() -> None:
    taken = bind("127.0.0.1", 0)
    try:
        port = taken.getsockname()[1]
        with pytest.raises(FnserveError) as info:
            bind("127.0.0.1", port)
        assert f"port {port} is in use" in str(info.value) and "--port" in str(info.value)
        assert info.value.exit_code == 2
    finally:
        taken.close()
