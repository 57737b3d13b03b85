"""Front-door limits (issue 10 items 3-5) that need no server: upstream, static, the app."""

from __future__ import annotations

import asyncio

import pytest

from fnserve.errors import RequestRejected
from fnserve.runtime import protocol as p
from fnserve.server.upstream import forward


class _RefusingConnection:
    name = "api/x"
    closed = False
    extras: dict[str, object] = {}

    def open_stream(self, scope: dict[str, object], body: bytes | None = None, more: bool = False) -> p.Stream:
        raise p.FrameTooLarge(70 * 1024 * 1024)


@pytest.mark.parametrize("kind", ["http", "websocket"])
def test_a_scope_too_big_for_one_frame_is_431_not_a_dead_worker(kind: str) -> None:
    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False} if kind == "http" else {"type": "websocket.connect"}

    async def send(message: dict[str, object]) -> None:  # pragma: no cover - nothing is sent
        raise AssertionError(message)

    with pytest.raises(RequestRejected) as info:
        asyncio.run(forward(_RefusingConnection(), {"type": kind, "path": "/x"}, receive, send))  # type: ignore[arg-type]
    assert info.value.status_code == 431 and "headers" in info.value.message
