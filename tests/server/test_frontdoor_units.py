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


def test_the_open_file_limit_is_raised_and_connections_capped_below_it() -> None:
    import resource
    import subprocess
    import sys

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 512:
        pytest.skip("needs a finite hard open-file limit of at least 512")
    code = (
        "import resource\n"
        "from fnserve.server.frontdoor import open_file_budget\n"
        "resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))\n"
        "budget = open_file_budget()\n"
        "print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], budget)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    limit, budget = int(out[0]), int(out[1])
    assert limit == min(hard, 1 << 20)
    assert 0 < budget <= limit - 128 and budget <= limit * 0.8 + 1


def test_front_limits_come_from_the_settings(tmp_path) -> None:
    from fnserve.config import load_config
    from fnserve.server.frontdoor import FrontHttpProtocol, FrontLimits, protocol_for, uvicorn_options

    config = load_config(tmp_path, {"header_limit": "8KB", "header_count": 20, "header_timeout": 2.5,
                                    "body_timeout": 4, "max_connections": 7})
    limits = FrontLimits.from_config(config)
    assert limits == FrontLimits(8 * 1024, 20, 2.5, 4.0, 7)
    bound = protocol_for(limits)
    assert issubclass(bound, FrontHttpProtocol) and bound.limits is limits
    assert uvicorn_options(limits)["http"].limits == limits
    unset = FrontLimits.from_config(load_config(tmp_path))
    assert unset.header_limit == 65536 and unset.header_count == 100 and unset.max_connections >= 1
