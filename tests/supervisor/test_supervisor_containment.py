"""Containment of instances (issue 10 items 6 and 7): the front owns every instance.

- a function that kills its zygote (``os.kill(os.getppid(), 9)``) fails nobody's request: the
  other functions' instances forked from it are reparented to the front (a child subreaper),
  finish their requests and keep serving; no zombie is left; new instances come from a new zygote;
- each instance leads its own process group, killed as a whole on every exit path, so the
  children and double-forked orphans a function started die with it (spawned and forked alike);
- instances die with the front, even one whose zygote died before;
- ``RLIMIT_NOFILE`` / ``RLIMIT_NPROC`` per instance (``Supervisor(rlimits=)``, settings
  ``instance_max_open_files`` / ``instance_max_processes``);
- the front's own subprocesses (``subprocess.run``, ``asyncio.create_subprocess_exec``) still work
  while it is a subreaper.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from ipc_support import request, run
from test_supervisor_support import function, kill_all, limits, make_project, serving, target, wait_dead
from test_supervisor_zygote import served

from fnserve.errors import DurationExceeded, WorkerCrashed
from fnserve.supervisor import Supervisor, ZygoteLauncher
from fnserve.supervisor.reaper import REAPER, child_pids, proc_state

A, B = "api/a.py", "api/b.py"

# An ASGI function (stdlib only) that starts processes and reports what containment is about.
APP = '''
import asyncio, json, os, resource, signal, subprocess, time

def orphan():
    """A double-forked `sleep` (no setsid: it stays in the instance's process group)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            grandchild = os.fork()
            if grandchild == 0:
                null = os.open(os.devnull, os.O_RDWR)
                for fd in (0, 1, 2):
                    os.dup2(null, fd)
                os.execvp("sleep", ["sleep", "60"])
            os.write(w, b"%d" % grandchild)
        finally:
            os._exit(0)
    os.close(w)
    grandchild = int(os.read(r, 32))
    os.close(r)
    os.waitpid(pid, 0)
    return grandchild

def info(**extra):
    return dict(pid=os.getpid(), ppid=os.getppid(), pgid=os.getpgid(0), sid=os.getsid(0), **extra)

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await receive()
    path = "/" + scope["path"].rsplit("/", 1)[-1]  # /fork, or /api/a/fork behind fnserve start
    query = scope["query_string"].decode()
    out = info()
    if path in ("/fork", "/crash", "/hang"):
        child = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        out.update(child=child.pid, orphan=orphan())
        if path == "/crash":
            os._exit(1)
        if path == "/hang":
            await asyncio.sleep(30)
    elif path == "/killzygote":
        os.kill(os.getppid(), signal.SIGKILL)
        time.sleep(0.2)
    elif path == "/slow":
        await asyncio.sleep(float(query or "1"))
        out = info()
    elif path == "/rlimits":
        out.update(nofile=resource.getrlimit(resource.RLIMIT_NOFILE), nproc=resource.getrlimit(resource.RLIMIT_NPROC))
    body = json.dumps(out).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
'''


def body(response) -> dict:
    return json.loads(response.body.decode())


def launcher_for(kind: str):
    return ZygoteLauncher() if kind == "zygote" else None


def zombies() -> set[int]:
    """This process's children that are zombies."""
    return {pid for pid in child_pids() if (proc_state(pid) or ("?",))[0] == "Z"}


def gone(pid: int) -> bool:
    """No process ``pid`` at all (not even a zombie: ``/proc/<pid>`` is gone)."""
    return not os.path.exists(f"/proc/{pid}")


def group_gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


async def until(check, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        await asyncio.sleep(0.02)
    return bool(check())


async def all_gone(started: dict) -> bool:
    """The instance, its process group, its child and its orphan: gone, zombies reaped."""
    pids = (started["pid"], started["child"], started["orphan"])
    return await until(lambda: group_gone(started["pgid"]) and all(gone(p) for p in pids))


# ------------------------------------------------------------------------------------------- item 6
def test_killing_the_zygote_spares_the_other_functions(tmp_path):
    """Function A SIGKILLs its zygote while function B (forked from the same zygote) serves a
    request: B's request succeeds, B serves again on the same instance (now the front's child),
    A's own request succeeds too (its instance survives), A serves again, no zombie is left, and
    the next instance comes from a new zygote."""
    root = make_project(tmp_path, {A: APP, B: APP})
    functions = {A: function(root, A), B: function(root, B)}

    async def main():
        launcher = ZygoteLauncher()
        sup = Supervisor([target(root, A, limits()), target(root, B, limits())], policy="autoscale",
                         launcher=launcher)
        async with sup, serving(sup, functions) as client:
            b0 = (await client.get("/b/slow?0")).json()
            a0 = (await client.get("/a/slow?0")).json()
            (zygote,) = launcher.zygotes.values()
            assert b0["ppid"] == zygote.pid == a0["ppid"]  # one zygote for both
            zombies_before = zombies()
            in_flight = asyncio.ensure_future(client.get("/b/slow?1.5"))
            assert await until(lambda: sup.pools.pools[B].instances[0].inflight == 1)
            killer = await client.get("/a/killzygote")
            assert killer.status_code == 200, killer.text  # docs/SECURITY.md: the killer's request is unharmed
            assert await wait_dead(zygote.pid)
            slow = await in_flight
            assert slow.status_code == 200 and slow.json()["pid"] == b0["pid"]
            b1 = (await client.get("/b/slow?0")).json()
            assert b1["pid"] == b0["pid"] and b1["ppid"] == os.getpid()  # reparented to the front
            a1 = await client.get("/a/slow?0")
            assert a1.status_code == 200 and a1.json()["pid"] == a0["pid"]
            # a new instance is forked by a new zygote; the old one is retired and reaped by us
            await sup.restart([B])
            b2 = (await client.get("/b/slow?0")).json()
            (new,) = launcher.zygotes.values()
            assert new.pid != zygote.pid and b2["ppid"] == new.pid and b2["pid"] != b0["pid"]
            assert await until(lambda: gone(b0["pid"]))  # reaped, not a zombie
            # nothing the dead zygote left (its standby) stays a zombie
            assert await until(lambda: not (zombies() - zombies_before), 3.0), zombies() - zombies_before
            for pid in (b0["pid"], a0["pid"]):
                assert proc_state(pid) is None or proc_state(pid)[0] != "Z"

    run(main())


def test_an_instance_whose_zygote_died_is_reaped_with_its_status(tmp_path):
    """After its zygote died, an instance that crashes is reaped by the front (no zombie), its
    status is the real one, and its process group is killed."""
    root = make_project(tmp_path, {A: APP})

    async def main():
        launcher = ZygoteLauncher()
        async with Supervisor([target(root, A)], launcher=launcher) as sup:
            first = body(await request(sup, A, "/slow", query=b"0"))
            (zygote,) = launcher.zygotes.values()
            os.kill(zygote.pid, signal.SIGKILL)
            assert await wait_dead(zygote.pid)
            inst = sup.pools.pools[A].instances[0]
            assert await until(lambda: (proc_state(first["pid"]) or ("", 0))[1] == os.getpid())
            with pytest.raises(WorkerCrashed):
                await request(sup, A, "/crash")
            assert await asyncio.wait_for(asyncio.shield(inst.exited), 5) == 1
            assert await until(lambda: gone(first["pid"]))
            again = body(await request(sup, A, "/slow", query=b"0"))
            assert again["pid"] != first["pid"] and again["ppid"] != zygote.pid

    run(main())


# ------------------------------------------------------------------------------------------- item 7
@pytest.mark.parametrize("kind", ["spawn", "zygote"])
def test_processes_a_function_started_die_with_its_instance_on_every_exit_path(tmp_path, kind):
    root = make_project(tmp_path, {A: APP})
    started: list[dict] = []

    async def fork(sup) -> dict:
        info = body(await request(sup, A, "/fork"))
        started.append(info)
        assert info["pgid"] == info["pid"]  # its own process group: pgid == pid
        assert not group_gone(info["pgid"]) and os.getpgid(info["orphan"]) == info["pgid"]
        return info

    async def main():
        launcher = launcher_for(kind)
        sup = Supervisor([target(root, A, limits(max_duration=0.5))], launcher=launcher, stop_timeout=2.0)
        async with sup:
            # crash: the instance exits by itself
            info = await fork(sup)
            with pytest.raises(WorkerCrashed):
                await request(sup, A, "/crash")
            assert await all_gone(info), ("crash", info)
            # maxDuration: the supervisor SIGKILLs it (through Supervisor.serve); the processes an
            # earlier request of the same instance started die with it
            info = await fork(sup)
            with pytest.raises(DurationExceeded):
                await served(sup, A, "/hang")
            assert await all_gone(info), ("maxDuration", info)
            # memory: the memory guard's kill (Instance.kill("memory")), the same SIGKILL path
            info = await fork(sup)
            sup.pools.pools[A].instances[0].kill("memory")
            assert await all_gone(info), ("memory", info)
            # retired (a reload): stopped gracefully, exits 0, its group is killed after
            info = await fork(sup)
            await sup.restart([A])
            assert await all_gone(info), ("retire", info)
            if kind == "zygote":  # its zygote died: it lives on, and its group still dies with it
                info = await fork(sup)
                (zygote,) = launcher.zygotes.values()
                os.kill(zygote.pid, signal.SIGKILL)
                assert await wait_dead(zygote.pid)
                await asyncio.sleep(0.2)
                assert not gone(info["child"]) and not gone(info["orphan"])  # alive: the instance is
                await sup.restart([A])
                assert await all_gone(info), ("zygote death, then retire", info)
            # shutdown
            info = await fork(sup)
        assert await all_gone(info), ("shutdown", info)

    try:
        run(main())
    finally:
        kill_all([p for s in started for p in (s["child"], s["orphan"])])


def test_the_group_of_an_instance_killed_for_max_duration_dies(tmp_path):
    """maxDuration (504): the hung request started a child and an orphan; both die with it."""
    root = make_project(tmp_path, {A: APP})
    marker = tmp_path / "pids"
    hang = APP.replace('        if path == "/hang":\n',
                       f'        open({str(marker)!r}, "w").write(json.dumps(out))\n        if path == "/hang":\n')
    (root / A).write_text(hang)

    async def main():
        async with Supervisor([target(root, A, limits(max_duration=0.5))], launcher=ZygoteLauncher()) as sup:
            with pytest.raises(DurationExceeded):
                await served(sup, A, "/hang")
            info = json.loads(marker.read_text())
            assert await all_gone(info), info

    run(main())


# ------------------------------------------------------------------------------------ front death
FRONT = '''
import asyncio, json, os, sys, time
sys.path[:0] = [sys.argv[2]]
from pathlib import Path
from ipc_support import request
from test_supervisor_support import target
from fnserve.supervisor import Supervisor, ZygoteLauncher

async def main():
    root = Path(sys.argv[1])
    launcher = ZygoteLauncher() if sys.argv[3] == "zygote" else None
    async with Supervisor([target(root, "api/a.py")], launcher=launcher, heartbeat=0.05) as sup:
        info = json.loads((await request(sup, "api/a.py", "/fork")).body)
        if sys.argv[4] == "kill-zygote":
            (zygote,) = launcher.zygotes.values()
            os.kill(zygote.pid, 9)
            for _ in range(100):
                now = json.loads((await request(sup, "api/a.py", "/slow", query=b"0")).body)
                if now["ppid"] == os.getpid():
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.3)  # a few heartbeats: the instance knows its new parent
        print(json.dumps(info), flush=True)
        await asyncio.sleep(60)

asyncio.run(main())
'''


@pytest.mark.parametrize("kind,how", [("spawn", ""), ("zygote", ""), ("zygote", "kill-zygote")])
def test_instances_and_their_processes_die_with_the_front(tmp_path, kind, how):
    """``kill -9`` of the front: its instances die (a spawned worker through PR_SET_PDEATHSIG, a
    forked one through its zygote, or through PR_SET_PDEATHSIG once its zygote died and it was
    reparented to the front). With its zygote alive, a forked instance's group dies with it (else
    what the function started survives a ``kill -9`` of the front: docs/SECURITY.md)."""
    root = make_project(tmp_path, {A: APP})
    script = tmp_path / "front.py"
    script.write_text(FRONT)
    tests = Path(__file__).parents[1]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tests), str(tests / "supervisor")]))
    proc = subprocess.Popen([sys.executable, str(script), str(root), str(tests / "supervisor"), kind, how],
                            stdout=subprocess.PIPE, text=True, env=env)
    info: dict = {}
    try:
        import select

        ready, _, _ = select.select([proc.stdout], [], [], 25)
        line = proc.stdout.readline() if ready else ""
        assert line, "the front printed nothing within 25 s"
        info = json.loads(line)
        proc.kill()
        proc.wait(5)

        async def check():
            assert await until(lambda: gone(info["pid"]) or (proc_state(info["pid"]) or "Z")[0] == "Z"), info
            if kind == "zygote" and not how:  # the zygote took the group down too
                assert await until(lambda: group_gone(info["pgid"])), info

        run(check())
    finally:
        if proc.poll() is None:
            proc.kill()
        kill_all([p for p in (info.get("pid"), info.get("child"), info.get("orphan")) if p])


# ---------------------------------------------------------------------------------------- rlimits
@pytest.mark.parametrize("kind", ["spawn", "zygote"])
def test_rlimits_apply_to_instances(tmp_path, kind):
    import resource

    root = make_project(tmp_path, {A: APP})
    _, nproc_hard = resource.getrlimit(resource.RLIMIT_NPROC)
    nproc = 100000 if nproc_hard == resource.RLIM_INFINITY else nproc_hard  # never below what runs

    async def main():
        async with Supervisor([target(root, A)], launcher=launcher_for(kind),
                              rlimits={"nofile": 256, "nproc": nproc}) as sup:
            seen = body(await request(sup, A, "/rlimits"))
            assert seen["nofile"] == [256, 256]
            assert seen["nproc"] == [nproc, nproc]
        async with Supervisor([target(root, A)], launcher=launcher_for(kind)) as sup:  # none: inherited
            seen = body(await request(sup, A, "/rlimits"))
            assert seen["nofile"] == list(resource.getrlimit(resource.RLIMIT_NOFILE))

    run(main())


def test_rlimit_settings(tmp_path):
    from fnserve.config import load_config

    config = load_config(tmp_path, {}, environ={}, mode="start", files=False)
    assert config.instance_max_open_files == 1024 and config.instance_max_processes == 0
    config = load_config(tmp_path, {}, mode="start", files=False,
                         environ={"FNSERVE_INSTANCE_MAX_OPEN_FILES": "300", "FNSERVE_INSTANCE_MAX_PROCESSES": "5000"})
    assert config.instance_max_open_files == 300 and config.instance_max_processes == 5000


# --------------------------------------------------------------------------- the front's own children
def test_the_fronts_own_subprocesses_work_while_it_is_a_subreaper(tmp_path):
    root = make_project(tmp_path, {A: APP})

    async def main():
        async with Supervisor([target(root, A)], launcher=ZygoteLauncher()) as sup:
            assert REAPER.subreaper
            assert (await request(sup, A, "/slow", query=b"0")).status == 200
            for session in (False, True):
                assert subprocess.run(["sh", "-c", "exit 3"], start_new_session=session).returncode == 3
                proc = await asyncio.create_subprocess_exec("sh", "-c", "sleep 0.1; exit 5", start_new_session=session)
                REAPER.sweep(scan=True)  # a sweep while it runs / right after it exits takes nothing
                assert await proc.wait() == 5
                out = await asyncio.create_subprocess_exec("sh", "-c", "echo hi", stdout=asyncio.subprocess.PIPE)
                assert (await out.communicate())[0] == b"hi\n" and out.returncode == 0
            popen = subprocess.Popen(["sh", "-c", "exit 7"], start_new_session=True)
            await asyncio.sleep(0.3)
            REAPER.sweep(scan=True)  # a zombie nobody has waited for yet is left to its waiter
            assert popen.wait() == 7
            # an orphan of the front's own command is reaped once it has been a zombie a while
            old, REAPER.stale_after = REAPER.stale_after, 0.2
            try:
                out = subprocess.run(["sh", "-c", "sleep 0.2 & echo $!"], capture_output=True, text=True)
                orphan = int(out.stdout)
                assert await until(lambda: (proc_state(orphan) or ("", 0))[1] == os.getpid() or gone(orphan))
                await asyncio.sleep(0.3)
                assert await until(lambda: REAPER.sweep(scan=True) >= 0 and gone(orphan), 5.0)
            finally:
                REAPER.stale_after = old
        assert not REAPER.subreaper  # off again once the last supervisor closed

    run(main())


def test_a_setsid_daemon_of_a_function_is_reaped(tmp_path):
    """A function's daemon that left the instance's group (``setsid``) escapes the group kill
    (documented), but once it exits the front still reaps it."""
    code = APP + textwrap.dedent('''
        _app = app

        async def app(scope, receive, send):
            if scope["type"] == "http" and scope["path"] == "/daemon":
                r, w = os.pipe()
                middle = os.fork()
                if middle == 0:
                    os.setsid()
                    pid = os.fork()
                    if pid == 0:
                        time.sleep(0.3)
                        os._exit(0)
                    os.write(w, b"%d" % pid)
                    os._exit(0)
                os.close(w)
                pid = os.read(r, 32)
                os.waitpid(middle, 0)
                await receive()
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": pid})
                return
            await _app(scope, receive, send)
    ''')
    root = make_project(tmp_path, {A: code})

    async def main():
        async with Supervisor([target(root, A)], launcher=ZygoteLauncher()) as sup:
            daemon = int((await request(sup, A, "/daemon")).body)
            old, REAPER.stale_after = REAPER.stale_after, 0.2
            try:
                assert await until(lambda: REAPER.sweep(scan=True) >= 0 and gone(daemon), 5.0)
            finally:
                REAPER.stale_after = old

    run(main())


def test_http_statuses_over_loopback(tmp_path):
    """The same through a real front on 127.0.0.1:0: a crash answers 502, maxDuration 504, and
    the function's processes are gone after each."""
    root = make_project(tmp_path, {A: APP})
    functions = {A: function(root, A)}

    async def main():
        sup = Supervisor([target(root, A, limits(max_duration=0.5))], launcher=ZygoteLauncher())
        async with sup, serving(sup, functions) as client:
            info = (await client.get("/a/fork")).json()
            assert (await client.get("/a/crash")).status_code == 502
            assert await all_gone(info)
            assert (await client.get("/a/hang")).status_code == 504
            again = await client.get("/a/slow?0")
            assert again.status_code == 200

    run(main())



@pytest.mark.parametrize("version", ["3.9", "3.13"])
def test_containment_on_other_pythons(tmp_path, version):
    """The runtime side (zygote, ``runtime.containment``) on the oldest and newest Pythons:
    rlimits set, an instance outlives its zygote and is reaped by the front."""
    from ipc_support import make_target
    from test_supervisor_zygote import _interpreter

    python = _interpreter(version)
    if python is None:
        pytest.skip(f"no Python {version} here")
    root = make_project(tmp_path, {A: APP})

    async def main():
        launcher = ZygoteLauncher()
        async with Supervisor([make_target(root, A, python=Path(python))], launcher=launcher,
                              rlimits={"nofile": 200}) as sup:
            first = body(await request(sup, A, "/rlimits"))
            (zygote,) = launcher.zygotes.values()
            assert first["nofile"] == [200, 200] and first["ppid"] == zygote.pid
            os.kill(zygote.pid, signal.SIGKILL)
            assert await until(lambda: (proc_state(first["pid"]) or ("", 0))[1] == os.getpid())
            again = body(await request(sup, A, "/rlimits"))
            assert again["pid"] == first["pid"]
            inst = sup.pools.pools[A].instances[0]
        assert inst.exited.result() == 0 and await until(lambda: gone(first["pid"]))

    run(main())


def test_fnserve_start_applies_the_rlimit_settings(tmp_path):
    """``fnserve start --instance-max-open-files 300``: the function sees ``RLIMIT_NOFILE``
    300/300 (over HTTP on 127.0.0.1:0); without the flag, the default 1024."""
    import httpx
    from startserver import StartServer

    root = make_project(tmp_path / "project", {A: APP})
    for args, nofile in ((("--instance-max-open-files", "300"), 300), ((), 1024)):
        srv = StartServer(root, tmp_path, *args)
        try:
            srv.start()
            seen = httpx.get(srv.url + "/api/a/rlimits", timeout=30).json()
            assert seen["nofile"] == [nofile, nofile], seen
        finally:
            srv.stop()


@pytest.mark.parametrize("kind", ["spawn", "zygote"])
def test_exits_are_seen_without_pidfd(tmp_path, monkeypatch, kind):
    """Without ``os.pidfd_open`` (old kernels) the front polls its instances' exits: the status
    is the real one and the instance's group still dies with it, also after its zygote died."""
    monkeypatch.delattr(os, "pidfd_open", raising=False)
    root = make_project(tmp_path, {A: APP})

    async def main():
        launcher = launcher_for(kind)
        async with Supervisor([target(root, A)], launcher=launcher) as sup:
            info = body(await request(sup, A, "/fork"))
            if launcher is not None:
                (zygote,) = launcher.zygotes.values()
                os.kill(zygote.pid, signal.SIGKILL)
                assert await until(lambda: (proc_state(info["pid"]) or ("", 0))[1] == os.getpid())
            inst = sup.pools.pools[A].instances[0]
            with pytest.raises(WorkerCrashed):
                await request(sup, A, "/crash")
            assert await asyncio.wait_for(asyncio.shield(inst.exited), 5) == 1
            assert await all_gone(info), info

    run(main())
