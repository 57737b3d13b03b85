"""Zygote cold starts (SPEC §9, issue 6 item 2): instances forked from a pre-warmed zygote serve,
are fork-safe (own pid, session and random state, no inherited control socket), their output is
attributed per instance, their exits are reported, and a zygote that cannot preload falls back to
spawning. Preload scan unit tests at the end."""

from __future__ import annotations

import ast
import asyncio
import logging
import os

import pytest
from ipc_support import APP, request, run
from test_supervisor_support import PROBE_APP, SYNC_APP, function, limits, make_project, target, wait_dead

from fnserve.errors import WorkerCrashed
from fnserve.supervisor import Supervisor, WorkerTarget, ZygoteLauncher, preload_modules

A, B = "api/a.py", "api/b.py"


def probe(client) -> dict:
    return ast.literal_eval(client.body.decode())


def test_forked_instances_serve_and_are_fork_safe(tmp_path):
    root = make_project(tmp_path, {A: PROBE_APP})

    async def main():
        launcher = ZygoteLauncher()
        sup = Supervisor([target(root, A, limits(concurrency=1, max_instances=2))], policy="autoscale",
                         launcher=launcher)
        async with sup:
            await launcher.prepare(sup.pools.pools[A].target, sup.starter.prepare_options())
            (zygote,) = launcher.zygotes.values()
            control = os.readlink(f"/proc/{zygote.pid}/fd/{zygote.control_fd}")
            assert control.startswith("socket:")
            first = probe(await request(sup, A, "/x"))
            # two at once with concurrency 1: a second instance is forked
            both = await asyncio.gather(*(served(sup, A, "/slow") for _ in range(2)))
            infos = [first] + [ast.literal_eval(b.decode()) for b in both]
            pids = {i["pid"] for i in infos}
            assert len(pids) == 2 and zygote.pid not in pids
            by_pid = {i["pid"]: i for i in infos}
            for info in by_pid.values():
                assert info["ppid"] == zygote.pid  # forked by the zygote, not spawned by us
                assert info["sid"] == info["pid"]  # its own session / process group
                assert control not in info["fds"].values()  # the control socket was closed
                assert set(info["fds"]) >= {"0", "1", "2"}
            randoms = [i["random"] for i in by_pid.values()]
            assert randoms[0] != randoms[1]  # random state reseeded in each child
        assert all(await asyncio.gather(*(wait_dead(p) for p in pids)))
        assert await wait_dead(zygote.pid)

    run(main())


async def served(sup: Supervisor, fid: str, path: str) -> bytes:
    """One request through ``Supervisor.serve`` (lease, limits); returns the body."""
    from ipc_support import Client, http_scope

    from fnserve.server.upstream import forward

    client = Client()
    await sup.serve(fid, http_scope(path), client.receive, client.send, forward)
    return client.body


def test_forked_output_is_attributed_and_exits_are_reported(tmp_path, caplog):
    root = make_project(tmp_path, {A: PROBE_APP, B: APP})
    caplog.set_level(logging.INFO, logger="fnserve")

    async def main():
        launcher = ZygoteLauncher()
        async with Supervisor([target(root, A), target(root, B)], launcher=launcher) as sup:
            info = probe(await request(sup, A, "/print"))
            for _ in range(100):
                if any(f"hello from {info['pid']}" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.02)
            rec = next(r for r in caplog.records if f"hello from {info['pid']}" in r.getMessage())
            assert rec.name == "fnserve.function.api/a" and rec.pid == info["pid"] and rec.stream == "stdout"
            # B crashes (os._exit(1)) in a forked instance: 502, exit status reported by the zygote
            pid_b = int((await request(sup, B, "/x")).headers[b"x-pid"])
            inst = sup.pools.pools[B].instances[0]
            with pytest.raises(WorkerCrashed):
                await request(sup, B, "/crash")
            assert await asyncio.wait_for(asyncio.shield(inst.exited), 5) == 1
            assert int((await request(sup, B, "/x")).headers[b"x-pid"]) != pid_b
            assert len(launcher.zygotes) == 1  # same interpreter, env and preload set: one zygote

    run(main())


def test_a_zygote_that_cannot_preload_falls_back_to_spawn(tmp_path, caplog):
    root = make_project(tmp_path, {A: SYNC_APP})
    caplog.set_level(logging.WARNING, logger="fnserve")

    async def main():
        launcher = ZygoteLauncher(preload=lambda t: ("no_such_module_for_fnserve_tests",))
        async with Supervisor([target(root, A)], launcher=launcher) as sup:
            r = await request(sup, A, "/x")
            assert r.status == 200
            pid = int(r.headers[b"x-pid"])
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            assert ppid == os.getpid()  # spawned by us
            assert len(launcher.zygotes) == 1  # the zygote stays for other functions of this env

    run(main())
    warnings = [r for r in caplog.records if "fresh interpreters" in r.getMessage()]
    assert len(warnings) == 1 and "no_such_module_for_fnserve_tests" in warnings[0].getMessage()


def test_preload_scan_follows_local_helpers_and_skips_local_names(tmp_path):
    root = make_project(tmp_path, {
        A: "import os\nfrom fastapi import FastAPI\nfrom lib.db import engine\nfrom . import x\n"
           "try:\n    import ujson\nexcept ImportError:\n    import json\n"
           "def f():\n    import django\nif True:\n    import flask.json\napp = FastAPI()\n",
        "lib/__init__.py": "",
        "lib/db.py": "import sqlalchemy\nimport lib.other\nengine = None\n",
        "lib/other.py": "import pydantic\n",
        "flask/__init__.py": "",  # a local folder shadowing flask: never preloaded
    })
    names = preload_modules(target(root, A))
    assert names == ("fastapi", "os", "pydantic", "sqlalchemy", "json?", "ujson?")


def test_preload_scan_reads_the_one_import_scan(tmp_path):
    """Sibling helpers (the entry's folder is on its ``sys.path``) and relative imports are
    followed; ``if TYPE_CHECKING:`` imports never run, so they are never preloaded; a namespace
    folder named like a distribution does not hide it; an ``except ValueError`` guards no import."""
    root = make_project(tmp_path, {
        A: "from typing import TYPE_CHECKING\nimport _sibling\nfrom ._rel import x\nimport flask\n"
           "if TYPE_CHECKING:\n    import mypy_boto3_s3\n"
           "try:\n    import yaml\nexcept ValueError:\n    pass\napp = None\n",
        "api/_sibling.py": "import httpx\n",
        "api/_rel.py": "import attr\nx = 1\n",
        "flask/readme.py": "",  # a folder without __init__.py: installed Flask wins (PEP 420)
    })
    assert preload_modules(target(root, A)) == ("attr", "flask", "httpx", "typing", "yaml")


def test_the_zygote_learns_modules_instances_import_lazily(tmp_path):
    lazy = '''
import importlib
importlib.import_module("wave")  # invisible to the ast scan

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    import colorsys  # imported by the first request only
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
'''
    root = make_project(tmp_path, {A: lazy})

    async def main():
        launcher = ZygoteLauncher()
        async with Supervisor([target(root, A)], launcher=launcher, heartbeat=0.1) as sup:
            await launcher.prepare(sup.pools.pools[A].target, sup.starter.prepare_options())
            (zygote,) = launcher.zygotes.values()
            assert "wave" not in zygote.loaded
            assert (await request(sup, A, "/x")).status == 200
            for _ in range(100):
                if {"wave", "colorsys"} <= zygote.loaded:
                    break
                await asyncio.sleep(0.05)
            assert {"wave", "colorsys"} <= zygote.loaded
            assert "api.a" not in zygote.loaded and "api" not in zygote.loaded  # never the project's own

    run(main())


def test_the_fastapi_warm_up_starts_no_thread_and_is_invisible_to_the_function(tmp_path):
    """The zygote and each standby build a throwaway FastAPI app and serve it one request
    (faster cold starts): no thread may start in the zygote, and the user's app is untouched."""
    pytest.importorskip("fastapi")
    code = (
        "from fastapi import FastAPI\nfrom pydantic import BaseModel\n\napp = FastAPI()\n\n\n"
        "class Item(BaseModel):\n    name: str\n\n\n"
        "@app.get('/api/a/{n}')\nasync def one(n: int, q: str = ''):\n    return {'n': n, 'q': q}\n"
    )
    root = make_project(tmp_path, {A: code})

    async def main():
        launcher = ZygoteLauncher()
        async with Supervisor([target(root, A, limits(max_instances=1, idle_timeout=0.0))], policy="autoscale",
                              launcher=launcher, tick=0.02) as sup:
            await launcher.prepare(sup.pools.pools[A].target, sup.starter.prepare_options())
            (zygote,) = launcher.zygotes.values()
            assert "fastapi" in zygote.loaded and int(zygote.info["threads"]) == 1
            for _ in range(2):  # the second one is assigned to a warmed standby
                for _ in range(200):
                    if not sup.pools.live:
                        break
                    await asyncio.sleep(0.02)
                await asyncio.sleep(0.2)
                assert await served(sup, A, "/api/a/7") == b'{"n":7,"q":""}'
                assert b"Not Found" in await served(sup, A, "/_fnserve_warm")
                assert b"Not Found" in await served(sup, A, "/_fnserve_warm/1")

    run(main())


def test_the_flask_warm_up_starts_no_thread_and_is_invisible_to_the_function(tmp_path):
    pytest.importorskip("flask")
    code = (
        "from flask import Flask, jsonify\n\napp = Flask(__name__)\n\n\n"
        "@app.get('/api/a/<name>')\ndef one(name):\n    return jsonify(name=name)\n"
    )
    root = make_project(tmp_path, {A: code})

    async def main():
        launcher = ZygoteLauncher()
        async with Supervisor([target(root, A, limits(max_instances=1))], policy="autoscale",
                              launcher=launcher) as sup:
            await launcher.prepare(sup.pools.pools[A].target, sup.starter.prepare_options())
            (zygote,) = launcher.zygotes.values()
            assert "flask" in zygote.loaded and int(zygote.info["threads"]) == 1
            assert await served(sup, A, "/api/a/x") == b'{"name":"x"}\n'
            assert b"Not Found" in await served(sup, A, "/_fnserve_warm")

    run(main())


def test_an_environment_change_retires_the_old_zygote_after_its_instances(tmp_path):
    root = make_project(tmp_path, {A: APP})

    async def main():
        launcher = ZygoteLauncher()
        async with Supervisor([target(root, A)], launcher=launcher) as sup:
            pid = int((await request(sup, A, "/x")).headers[b"x-pid"])
            (old,) = launcher.zygotes.values()
            changed = WorkerTarget.from_function(function(root, A), root, env={"NEW": "1"})
            assert await sup.update([changed]) == {A}
            assert (await request(sup, A, "/env", query=b"NEW")).body == b"1"
            assert await wait_dead(pid) and await wait_dead(old.pid)
            (new,) = launcher.zygotes.values()
            assert new.pid != old.pid

    run(main())


def _interpreter(version: str):
    import glob

    found = sorted(glob.glob(f"/root/.pyenv/versions/{version}.*/bin/python")) + sorted(
        glob.glob(f"/usr/bin/python{version}"))
    return found[0] if found else None


@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_zygote_runs_on_other_pythons(tmp_path, version):
    from pathlib import Path

    from ipc_support import make_target

    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} here")
    root = make_project(tmp_path, {A: PROBE_APP})

    async def main():
        launcher = ZygoteLauncher()
        async with Supervisor([make_target(root, A, python=Path(python))], launcher=launcher) as sup:
            info = probe(await request(sup, A, "/x"))
            (zygote,) = launcher.zygotes.values()
            assert info["ppid"] == zygote.pid and zygote.info["python"].startswith(version)

    run(main())
