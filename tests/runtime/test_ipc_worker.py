"""Real worker processes behind a Supervisor, driven through ``upstream.forward`` in memory."""

from __future__ import annotations

import ast
import asyncio
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from ipc_support import APP, Client, http_scope, make_project, make_target, request, run

import fnserve
from fnserve.errors import FunctionFailed
from fnserve.server.upstream import forward
from fnserve.supervisor import Supervisor

FID = "api/a.py"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, {FID: APP})


def test_round_trip_and_binary_body_byte_exact(project):
    body = os.urandom(3 * 1024 * 1024 + 17)  # over CHUNK: split into several frames

    async def main():
        async with Supervisor([make_target(project, FID)]) as sup:
            c = await request(sup, FID, "/hello", query=b"x=1")
            assert (c.status, c.body) == (200, b"ok:/hello?x=1")
            assert c.headers[b"content-type"] == b"application/octet-stream"
            chunks = [body[i:i + 100_000] for i in range(0, len(body), 100_000)]
            c = await request(sup, FID, "/echo", body_chunks=chunks, method="POST")
            assert c.body == body

    run(main())


def test_100_concurrent_streams_on_one_worker(project):
    async def main():
        async with Supervisor([make_target(project, FID)]) as sup:
            await request(sup, FID, "/warm")
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            clients = await asyncio.gather(*(request(sup, FID, "/slow", query=b"0.5") for _ in range(100)))
            elapsed = loop.time() - t0
            assert all(c.status == 200 for c in clients)
            assert len({c.headers[b"x-pid"] for c in clients}) == 1
            assert elapsed < 4.0, f"100 x 0.5 s requests took {elapsed:.2f} s: not concurrent"

    run(main())


def test_response_streams_before_the_app_finishes(project):
    async def main():
        async with Supervisor([make_target(project, FID)]) as sup:
            conn = await sup.acquire(FID)
            client = Client()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await forward(conn, http_scope("/stream"), client.receive, client.send)
            bodies = [m["body"] for m in client.messages[1:]]
            assert bodies == [b"chunk0;", b"chunk1;", b"chunk2;", b""]
            assert client.times[1] - t0 < 0.25  # first chunk long before the app's 0.9 s end
            assert client.times[-1] - t0 > 0.8

    run(main())


def test_request_body_streams_to_the_app(project):
    async def main():
        async with Supervisor([make_target(project, FID)]) as sup:
            conn = await sup.acquire(FID)
            client = Client([])
            client.inbox.put_nowait({"type": "http.request", "body": b"one", "more_body": True})
            task = asyncio.ensure_future(forward(conn, http_scope("/upload-stream", "POST"), client.receive, client.send))
            for expected, nxt in ((b"got:one\n", b"two"), (b"got:two\n", b"three")):
                for _ in range(200):  # the app answers each chunk before the next one is sent
                    if any(m.get("body") == expected for m in client.messages):
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError(f"no {expected!r} before the next chunk; got {client.messages}")
                client.inbox.put_nowait({"type": "http.request", "body": nxt, "more_body": nxt != b"three"})
            await asyncio.wait_for(task, 5)
            assert client.body == b"got:one\ngot:two\ngot:three\n"

    run(main())


def test_websocket_echo_through_frames(project):
    async def main():
        async with Supervisor([make_target(project, FID)]) as sup:
            conn = await sup.acquire(FID)
            client = Client([])
            client.inbox.put_nowait({"type": "websocket.connect"})
            scope = dict(http_scope("/ws"), type="websocket", scheme="ws", subprotocols=[])
            task = asyncio.ensure_future(forward(conn, scope, client.receive, client.send))
            client.inbox.put_nowait({"type": "websocket.receive", "text": "hi"})
            client.inbox.put_nowait({"type": "websocket.receive", "bytes": b"\x00\x01\xff"})
            client.inbox.put_nowait({"type": "websocket.receive", "text": "close"})
            await asyncio.wait_for(task, 5)
            types = [m["type"] for m in client.messages]
            assert types == ["websocket.accept", "websocket.send", "websocket.send", "websocket.close"]
            assert client.messages[1]["text"] == "echo:hi"
            assert client.messages[2]["bytes"] == b"\xff\x01\x00"

    run(main())


def test_a_stalled_stream_never_blocks_the_others(project):
    """Per-stream flow control: a client that stops reading a 64 MB streamed response, and an app
    that never reads its 8 MB request body, hold only their own streams."""

    async def main():
        async with Supervisor([make_target(project, FID)]) as sup:
            conn = await sup.acquire(FID)
            stalled = asyncio.Event()
            received = []

            async def slow_send(message):  # the client reads one chunk, then stops reading
                received.append(len(message.get("body", b"")))
                if len(received) > 1:
                    await stalled.wait()

            download = asyncio.ensure_future(
                forward(conn, http_scope("/big-stream", query=b"1024"), Client().receive, slow_send)
            )
            uploader = Client([b"u" * 65536] * 128)
            upload = asyncio.ensure_future(
                forward(conn, http_scope("/ignore-body", "POST", query=b"3"), uploader.receive, uploader.send)
            )
            await asyncio.sleep(0.3)
            t0 = asyncio.get_running_loop().time()
            clients = await asyncio.wait_for(asyncio.gather(*(request(sup, FID, "/x") for _ in range(20))), 5)
            assert all(c.status == 200 for c in clients)
            assert asyncio.get_running_loop().time() - t0 < 2.0
            assert not download.done() and not upload.done()
            stalled.set()
            await asyncio.wait_for(download, 20)
            await asyncio.wait_for(upload, 10)
            assert sum(received) == 1024 * 65536

    run(main())


def test_client_disconnect_reaches_the_app(project, tmp_path):
    marker = tmp_path / "disconnected"

    async def main():
        async with Supervisor([make_target(project, FID, env={"DISCONNECT_MARKER": str(marker)})]) as sup:
            conn = await sup.acquire(FID)
            client = Client()
            task = asyncio.ensure_future(forward(conn, http_scope("/wait-disconnect"), client.receive, client.send))
            await asyncio.wait_for(client.got_message.wait(), 5)
            client.disconnect()
            await asyncio.wait_for(task, 5)
            for _ in range(200):
                if marker.exists():
                    break
                await asyncio.sleep(0.01)
            assert marker.read_text() == "http.disconnect"

    run(main())


def test_app_exception_is_function_failed_with_traceback(project):
    async def main():
        async with Supervisor([make_target(project, FID)]) as sup:
            with pytest.raises(FunctionFailed) as info:
                await request(sup, FID, "/raise")
            assert not info.value.response_started
            assert "boom from the function" in info.value.traceback
            assert (await request(sup, FID, "/after")).status == 200  # same worker still serves
            assert sup.spawn_count(FID) == 1

    run(main())


def test_function_output_and_env_are_per_function(project, caplog, monkeypatch):
    monkeypatch.setenv("FNSERVE_PORT", "1234")  # an fnserve internal: not for functions
    caplog.set_level(logging.INFO, logger="fnserve.function")

    async def main():
        async with Supervisor([make_target(project, FID, env={"FROM_DOTENV": "yes"})]) as sup:
            assert (await request(sup, FID, "/env", query=b"FROM_DOTENV")).body == b"yes"
            assert (await request(sup, FID, "/env", query=b"FNSERVE_PORT")).body == b"<unset>"
            await request(sup, FID, "/print")
            for _ in range(100):
                if any(r.getMessage() == "hello from the function" for r in caplog.records):
                    break
                await asyncio.sleep(0.01)

    run(main())
    assert "FROM_DOTENV" not in os.environ
    records = [r for r in caplog.records if r.getMessage() == "hello from the function"]
    assert records and records[0].name == "fnserve.function.api/a"
    assert records[0].function == FID and records[0].stream == "stdout"


def _base_python() -> str:
    for candidate in ("/root/.pyenv/versions/3.11.7/bin/python", getattr(sys, "_base_executable", ""), sys.executable):
        if candidate and Path(candidate).exists():
            return candidate
    return sys.executable


def test_fnserve_deps_are_not_importable_in_the_function_env(project, tmp_path):
    venv = tmp_path / "fenv"
    subprocess.run([_base_python(), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"

    async def main():
        async with Supervisor([make_target(project, FID, python=python)]) as sup:
            c = await request(sup, FID, "/import-click")
            verdict, executable, path = c.body.decode().split("|", 2)
            assert verdict == "no click"
            assert executable == str(python)
            entries = ast.literal_eval(path)
            fnserve_src = str(Path(fnserve.__file__).resolve().parents[1])
            assert not [e for e in entries if e.startswith((fnserve_src, sys.prefix))], entries
            assert any(e.startswith(str(venv)) for e in entries)
            path_env = (await request(sup, FID, "/env", query=b"PATH")).body.decode()
            assert path_env.split(os.pathsep)[0] == str(venv / "bin")
            assert str(Path(sys.prefix) / "bin") not in path_env.split(os.pathsep)
            assert (await request(sup, FID, "/env", query=b"VIRTUAL_ENV")).body.decode() == str(venv)

    run(main())


PYTHONS = [f"/root/.pyenv/versions/{v}/bin/python" for v in ("3.9.18", "3.12.1", "3.13.0")]


@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: p.split("/")[-3])
def test_worker_runs_on_other_pythons(project, python):
    if not Path(python).exists():
        pytest.skip(f"{python} is not installed here")

    async def main():
        async with Supervisor([make_target(project, FID, python=Path(python))]) as sup:
            c = await request(sup, FID, "/echo", body_chunks=[b"\x00abc", b"\xff"], method="POST")
            assert c.body == b"\x00abc\xff"
            conn = await sup.acquire(FID)
            client = Client([])
            client.inbox.put_nowait({"type": "websocket.connect"})
            client.inbox.put_nowait({"type": "websocket.receive", "text": "close"})
            scope = dict(http_scope("/ws"), type="websocket", scheme="ws", subprotocols=[])
            await asyncio.wait_for(forward(conn, scope, client.receive, client.send), 5)
            assert [m["type"] for m in client.messages] == ["websocket.accept", "websocket.close"]

    run(main())
