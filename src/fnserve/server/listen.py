"""The listening sockets of ``fnserve dev`` and ``fnserve start`` (bound before uvicorn runs, so
that the port is known, and taken, before anything is served)."""

from __future__ import annotations

import errno
import socket

from fnserve.errors import FnserveError

__all__ = ["bind"]


def bind(host: str, port: int) -> socket.socket:
    """A listening, non-blocking TCP socket on ``host:port`` (``port`` 0: any free port; IPv6
    when ``host`` has a ``:``). Raises ``FnserveError`` (exit code 2) when the port is in use
    ("pass --port") or the address cannot be bound ("check --host")."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise FnserveError(f"port {port} is in use on {host}", "pass --port (0 picks a free port)") from exc
        raise FnserveError(f"cannot listen on {host}:{port}: {exc.strerror}", "check --host") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock
