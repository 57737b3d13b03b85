"""The listening sockets of ``fnserve dev`` and ``fnserve start`` (bound before uvicorn runs, so
that the port is known, and taken, before anything is served)."""

from __future__ import annotations

import errno
import socket

from fnserve.errors import FnserveError

__all__ = ["PortTaken", "bind", "bind_first_free"]

FREE_PORT_TRIES = 20
"""How many ports after a taken default ``fnserve dev`` tries (3000 → 3001 ... 3020)."""


class PortTaken(FnserveError):
    """The port is in use by another process. ``port``, ``host``: what was asked."""

    def __init__(self, host: str, port: int, hint: str) -> None:
        self.host, self.port = host, port
        super().__init__(f"port {port} is in use on {host}", hint)


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
            raise PortTaken(host, port, "pass --port (0 picks a free port)") from exc
        raise FnserveError(f"cannot listen on {host}:{port}: {exc.strerror}", "check --host") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def bind_first_free(host: str, port: int, *, explicit: bool, tries: int = FREE_PORT_TRIES) -> socket.socket:
    """``bind(host, port)``, or when ``port`` is taken and not ``explicit`` (the default port,
    not a flag, variable or file value) the first free one of the next ``tries`` ports (what
    ``fnserve dev`` does; the caller compares the bound port to say so). Raises ``PortTaken``
    for an explicit port that is taken ("stop the other server or pass another --port") or when
    every port tried is taken, ``FnserveError`` when the address cannot be bound."""
    try:
        return bind(host, port)
    except PortTaken as exc:
        if explicit or port == 0:
            raise PortTaken(host, port, f"another program listens on {port}: stop it, or pass another "
                            "--port / -p (0 picks any free port)") from exc
    for candidate in range(port + 1, min(port + 1 + tries, 65536)):
        try:
            return bind(host, candidate)
        except PortTaken:
            continue
    raise PortTaken(host, port, f"so are the next {tries} ports: pass --port / -p (0 picks any free port)")
