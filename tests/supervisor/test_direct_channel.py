"""The supervisor's side of the direct path (issue 14 item 2, ``supervisor/handoff.py``): a real
``Supervisor(direct=True)`` with real processes — a stand-in worker (``FAKE_WORKER``, stdlib +
the runtime's ``protocol``) launched through a ``SpawnLauncher`` subclass, speaking the frames
protocol (HELLO, READY, REPORT, EXPIRED, DIRECT_PLAN, STOP) and the SOCK_SEQPACKET channel.

The stand-in takes commands, one per line, from the data of each passed connection and then from
the connection itself (the test holds the client end of a ``socketpair``): ``keep``, ``close``
(X), ``hand <data>`` (H with the fd), ``echo <text>``, ``report <json list>``, ``expire``,
``bad`` (malformed packets), ``exit``, ``busy`` / ``idle`` (the state it writes in its slot of the
front's table), ``deaf`` (it ignores R for this connection). On ``R`` it hands back (H, no data) a
connection it holds that is neither busy nor deaf, as the real worker does. It appends what it
receives (options, plans, connections, R packets) to a JSON-lines file.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from ipc_support import pid_alive, run
from test_supervisor_support import function, limits

from fnserve.supervisor import Supervisor, WorkerTarget
from fnserve.supervisor.instance import Instance
from fnserve.supervisor.launch import RUNTIME_DIR, SpawnLauncher

FID = "api/fake.py"

FAKE_WORKER = r'''
import asyncio, importlib.util, json, os, socket, struct, sys

d = sys.argv[1]
spec = importlib.util.spec_from_file_location("_fake_runtime", d + "/__init__.py", submodule_search_locations=[d])
mod = importlib.util.module_from_spec(spec)
sys.modules["_fake_runtime"] = mod
spec.loader.exec_module(mod)
from _fake_runtime import protocol as p
from _fake_runtime.slotwriter import SlotWriter

options = json.loads(sys.argv[2])
MODE = os.environ.get("FAKE_MODE", "")


def note(**event):
    with open(os.environ["FAKE_LOG"], "a") as f:
        f.write(json.dumps(event) + "\n")


async def main():
    loop = asyncio.get_running_loop()
    stop = loop.create_future()
    conn = p.Connection()

    def on_control(ftype, obj):
        if ftype == p.DIRECT_PLAN:
            note(event="plan", plan=obj)
        elif ftype == p.STOP and not stop.done():
            stop.set_result(None)

    conn.on_control = on_control
    await loop.create_unix_connection(lambda: conn, options["socket"])
    conn.send_control(p.HELLO, {"token": options["token"], "pid": os.getpid(), "python": sys.version.split()[0]})
    note(event="options", options=options)
    chan = None
    slots = []
    held = {}  # cid -> [sock, busy, deaf]

    def drop(sock):
        loop.remove_reader(sock.fileno())
        sock.close()

    def commands(cid, sock, buf, data):
        buf[0] += data
        while b"\n" in buf[0]:
            line, buf[0] = buf[0].split(b"\n", 1)
            verb, _, rest = line.partition(b" ")
            if verb == b"close":
                drop(sock)
                held.pop(cid, None)
                chan.send(b"X" + cid)
                return
            if verb == b"hand":
                socket.send_fds(chan, [b"H" + cid + rest], [sock.fileno()])
                drop(sock)
                held.pop(cid, None)
                return
            if verb in (b"busy", b"idle"):
                held[cid][1] = verb == b"busy"
                slot = struct.unpack("!Q", cid)[0] & 0xFFFFFFFF
                if slots:
                    slots[0].start(slot) if verb == b"busy" else slots[0].idle(slot)
            elif verb == b"deaf":
                held[cid][2] = True
            if verb == b"bad":
                chan.send(b"Z")
                chan.send(b"X" + struct.pack("!Q", 1 << 60))
                socket.send_fds(chan, [b"H" + cid + b"x"], [sock.fileno(), sock.fileno()])
                drop(sock)
                return
            if verb == b"echo":
                sock.send(rest)
            elif verb == b"report":
                conn.send_control(p.REPORT, {"requests": json.loads(rest)})
            elif verb == b"expire":
                conn.send_control(p.EXPIRED, {"limit": 2.5})
            elif verb == b"exit":
                os._exit(3)

    def on_sock(cid, sock, buf):
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        if not data:
            drop(sock)
            held.pop(cid, None)
            chan.send(b"X" + cid)
            return
        commands(cid, sock, buf, data)

    def on_chan():
        try:
            msg, fds, _flags, _addr = socket.recv_fds(chan, 300000, 4)
        except BlockingIOError:
            return
        if not msg and not fds:
            note(event="channel-closed")
            loop.remove_reader(chan.fileno())
            return
        if msg[:1] == b"M":
            slots.append(SlotWriter(fds[0], int.from_bytes(msg[1:5], "big")))
            return
        if msg[:1] == b"R":
            note(event="reclaim", id=struct.unpack("!Q", msg[1:9])[0])
            entry = held.get(msg[1:9])
            if entry is not None and not entry[1] and not entry[2]:
                socket.send_fds(chan, [b"H" + msg[1:9]], [entry[0].fileno()])
                drop(entry[0])
                del held[msg[1:9]]
            return
        cid = msg[1:9]
        sock = socket.socket(fileno=fds[0])
        sock.setblocking(False)
        note(event="conn", id=struct.unpack("!Q", cid)[0], data=msg[9:].decode("latin-1"))
        buf = [b""]
        held[cid] = [sock, False, False]
        loop.add_reader(sock.fileno(), on_sock, cid, sock, buf)
        commands(cid, sock, buf, msg[9:])

    if options.get("direct") and MODE != "no-direct":
        chan = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        chan.connect(options["direct"])
        chan.send(b"T" + (b"nope" if MODE == "bad-token" else options["token"].encode()))
        chan.setblocking(False)
        if MODE != "stall":
            loop.add_reader(chan.fileno(), on_chan)
    conn.send_control(p.READY, {"pid": os.getpid(), "startup_ms": 1.0, "kind": "asgi"})
    await stop
    conn.close()


asyncio.run(main())
'''


class FakeLauncher(SpawnLauncher):
    """``SpawnLauncher`` running ``FAKE_WORKER`` (a file) instead of the runtime's worker main."""

    def __init__(self, script: Path) -> None:
        self.script = script

    def _exec(self, target: WorkerTarget, options: Mapping[str, Any], out: int, err: int) -> subprocess.Popen[bytes]:  # type: ignore[override]  # an instance method here: it needs the script
        return subprocess.Popen([sys.executable, "-I", str(self.script), str(RUNTIME_DIR), json.dumps(dict(options))],
                                stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=dict(target.env),
                                start_new_session=True)


def setup(tmp_path: Path, mode: str = "", **lim: Any) -> tuple[WorkerTarget, FakeLauncher, Path]:
    script = tmp_path / "fake_worker.py"
    script.write_text(FAKE_WORKER)
    log = tmp_path / "events.jsonl"
    log.touch()
    env = {"PATH": os.environ.get("PATH", ""), "FAKE_LOG": str(log), "FAKE_MODE": mode}
    fn = function(tmp_path, FID)
    target = WorkerTarget.from_function(fn, tmp_path, env=env, limits=limits(**{"max_instances": 1, **lim}))
    return target, FakeLauncher(script), log


def events(log: Path, kind: str) -> list[dict[str, Any]]:
    return [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == kind]


async def until(cond: Callable[[], Any], timeout: float = 5.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if cond():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


async def ready(sup: Supervisor, channel: bool = True) -> Instance:
    """Start the function's instance (a frames acquire) and wait for its channel."""
    await sup.acquire(FID)
    inst = sup.pools.get(FID).instances[0]
    if channel:
        await until(lambda: inst.direct_channel is not None)
    return inst


def plan_for(fid: str) -> dict[str, Any]:
    return {"version": 1, "function": fid, "routes": [], "exclude": []}


def supervisor(target: WorkerTarget, launcher: FakeLauncher, **kw: Any) -> Supervisor:
    sup = Supervisor([target], launcher=launcher, policy="autoscale", stop_timeout=1.0, direct=kw.pop("direct", True),
                     **kw)
    sup.set_direct_plan(plan_for)
    return sup


def pass_new(sup: Supervisor, data: bytes) -> tuple[bool, socket.socket]:
    """Pass a new connection (one end of a socketpair, closed here as the front would when passed);
    returns (passed, the client end)."""
    client, server = socket.socketpair()
    try:
        return sup.pass_connection(FID, server, data), client
    finally:
        server.close()


def passes(sup: Supervisor, data: bytes) -> bool:
    """``pass_new`` for a pass expected to fail: the client end is closed at once."""
    ok, client = pass_new(sup, data)
    client.close()
    return ok


def recv(sock: socket.socket, n: int) -> bytes:
    sock.settimeout(5)
    return sock.recv(n)


def test_channel_attached_by_token_and_plan_sent_after_ready_and_on_refresh(tmp_path):
    target, launcher, log = setup(tmp_path)

    async def main():
        async with supervisor(target, launcher) as sup:
            inst = await ready(sup)
            options = events(log, "options")[0]["options"]
            assert options["direct"] == sup.direct.path and os.path.basename(options["direct"]) == "direct.sock"
            assert os.path.dirname(options["direct"]) == os.path.dirname(options["socket"])  # beside workers.sock
            await until(lambda: events(log, "plan"))
            # the provider's plan, plus what is left of this instance's own limits (none here)
            assert events(log, "plan") == [{"event": "plan", "plan": {**plan_for(FID), "max_requests": None,
                                                                      "max_failures": None}}]
            assert inst.direct_planned
            sup.set_direct_plan(lambda fid: dict(plan_for(fid), version=2))  # a new provider: sent at once
            await until(lambda: len(events(log, "plan")) == 2)
            assert events(log, "plan")[1]["plan"]["version"] == 2
            assert sup.refresh_direct_plans() == 1  # the front's site reload
            await until(lambda: len(events(log, "plan")) == 3)
            path = sup.direct.path
            assert os.path.exists(path)
        assert not os.path.exists(path)  # removed with the supervisor's folder

    run(main(), 30)


def test_unknown_token_is_refused_with_a_warning(tmp_path, caplog):
    target, launcher, log = setup(tmp_path, "bad-token")

    async def main():
        async with supervisor(target, launcher) as sup:
            inst = await ready(sup, channel=False)
            await until(lambda: events(log, "channel-closed"))  # the worker sees its channel closed
            await until(lambda: any("direct-path socket without a valid token" in r.getMessage()
                                    for r in caplog.records))
            assert inst.direct_channel is None
            assert not passes(sup, b"keep\n")  # no channel: the front serves it through the frames path

    with caplog.at_level(logging.WARNING, logger="fnserve.supervisor"):
        run(main(), 30)


def test_pass_holds_a_lease_until_x_and_counts_requests_from_reports(tmp_path):
    target, launcher, log = setup(tmp_path)
    reports: list[tuple[str, int, list[Any]]] = []

    async def main():
        async with supervisor(target, launcher) as sup:
            sup.on_direct_report = lambda fid, pid, requests: reports.append((fid, pid, requests))
            inst = await ready(sup)
            pool = sup.pools.get(FID)
            served = inst.served
            ok, client = pass_new(sup, b"echo hello\n")
            assert ok and inst.leases == 1 and inst.load == 1 and inst.idle_since is None
            assert inst.served == served  # a connection is not a request
            assert recv(client, 5) == b"hello"  # the worker got a working fd
            conn_id = events(log, "conn")[0]["id"]
            assert sup.direct_stats() == {"passed": 1, "handed_back": 0, "closed": 0, "lost": 0, "open": 1}
            # REPORT: served += 3, failures = consecutive 5xx, the hook gets the list
            rows = [["r1", "GET", "/a", 200, 1.5], ["r2", "GET", "/b?x=1", 502, 2], ["r3", "POST", "/c", 503, 0.5]]
            client.sendall(b"report " + json.dumps(rows).encode() + b"\n")
            await until(lambda: reports)
            assert reports == [(FID, inst.pid, rows)]
            assert inst.served == served + 3 and inst.failures == 2
            client.sendall(b'report [["r4", "GET", "/d", 0, 3.0]]\n')  # status 0 (client left) resets, as frames do
            await until(lambda: len(reports) == 2)
            assert inst.served == served + 4 and inst.failures == 0
            # X: the lease is released
            client.sendall(b"close\n")
            await until(lambda: inst.leases == 0)
            assert inst.idle_since is not None and pool.free() is inst
            assert sup.direct_stats() == {"passed": 1, "handed_back": 0, "closed": 1, "lost": 0, "open": 0}
            assert conn_id > 0
            client.close()

    run(main(), 30)


def test_reports_recycle_the_instance_as_the_frames_path_does(tmp_path, caplog):
    target, launcher, log = setup(tmp_path)

    async def main():
        async with supervisor(target, launcher, max_failures=2) as sup:
            inst = await ready(sup)
            ok, client = pass_new(sup, b'report [["a", "GET", "/", 500, 1], ["b", "GET", "/", 503, 1]]\n')
            assert ok
            status = await asyncio.wait_for(asyncio.shield(inst.exited), 5)  # retired: STOP, the worker exits 0
            assert status == 0 and sup.pools.get(FID).replaced == {"failures": 1}
            # idle when it exited (its slot says so): the connection comes back to the front
            assert inst.leases == 0 and sup.direct_stats()["handed_back"] == 1 and sup.direct_stats()["lost"] == 0
            client.close()

    with caplog.at_level(logging.WARNING, logger="fnserve.supervisor"):
        run(main(), 30)
    assert any("replacing worker" in r.getMessage() and "its last 2 requests failed" in r.getMessage()
               for r in caplog.records)


def test_hand_back_calls_the_front_hook_with_a_working_socket(tmp_path):
    target, launcher, _log = setup(tmp_path)
    got: list[tuple[socket.socket, bytes]] = []

    async def main():
        async with supervisor(target, launcher) as sup:
            sup.on_hand_back = lambda sock, data: got.append((sock, data))
            inst = await ready(sup)
            ok, client = pass_new(sup, b"hand GET /other HTTP/1.1\n")
            assert ok
            await until(lambda: got)
            sock, data = got[0]
            assert data == b"GET /other HTTP/1.1"
            assert inst.leases == 0 and sup.direct_stats()["handed_back"] == 1
            sock.setblocking(True)
            sock.sendall(b"served by the front")
            assert recv(client, 100) == b"served by the front"
            client.sendall(b"ping")
            sock.settimeout(5)
            assert sock.recv(10) == b"ping"
            sock.close()
            client.close()

    run(main(), 30)


def test_default_hand_back_closes_the_connection(tmp_path):
    target, launcher, _log = setup(tmp_path)

    async def main():
        async with supervisor(target, launcher) as sup:
            await ready(sup)
            ok, client = pass_new(sup, b"hand x\n")
            assert ok
            await until(lambda: sup.direct_stats()["handed_back"] == 1)
            assert recv(client, 10) == b""  # closed: nobody took it
            client.close()

    run(main(), 30)


def test_instance_exit_releases_every_connection(tmp_path):
    target, launcher, _log = setup(tmp_path)

    async def main():
        async with supervisor(target, launcher) as sup:
            inst = await ready(sup)
            clients = []
            for _ in range(3):
                ok, client = pass_new(sup, b"keep\n")
                assert ok
                clients.append(client)
            assert inst.leases == 3
            clients[0].sendall(b"exit\n")
            await asyncio.wait_for(asyncio.shield(inst.exited), 5)
            assert inst.leases == 0 and inst.direct_conns == set() and inst.direct_channel is None
            # idle when it exited (the stand-in writes no slot state): each comes back to the front
            assert sup.direct_stats() == {"passed": 3, "handed_back": 3, "closed": 0, "lost": 0, "open": 0}
            for client in clients:
                client.close()

    run(main(), 30)


def test_expired_kills_the_instance_with_reason_duration(tmp_path, caplog):
    target, launcher, _log = setup(tmp_path)

    async def main():
        async with supervisor(target, launcher) as sup:
            inst = await ready(sup)
            ok, client = pass_new(sup, b"expire\n")
            assert ok
            status = await asyncio.wait_for(asyncio.shield(inst.exited), 5)
            assert status < 0 and inst.kill_reason == "duration"
            await until(lambda: sup.pools.get(FID).replaced.get("duration") == 1)
            # idle when it exited (its slot says so): the connection comes back to the front
            assert inst.leases == 0 and sup.direct_stats()["handed_back"] == 1 and sup.direct_stats()["lost"] == 0
            client.close()

    with caplog.at_level(logging.WARNING, logger="fnserve.supervisor"):
        run(main(), 30)
    assert any("a request ran past its maxDuration of 2.5 s; killing worker" in r.getMessage() and "(504)" in r.getMessage()
               for r in caplog.records)


def test_malformed_packets_close_their_fds_warn_once_and_never_crash(tmp_path, caplog):
    target, launcher, log = setup(tmp_path)

    async def main():
        async with supervisor(target, launcher) as sup:
            inst = await ready(sup)
            ok, client = pass_new(sup, b"keep\n")
            assert ok
            await until(lambda: events(log, "conn"))
            before = len(os.listdir("/proc/self/fd"))
            client.sendall(b"bad\n")  # Z packet; X for a connection it does not hold; H with two fds
            await until(lambda: inst.leases == 0)
            await asyncio.sleep(0.1)
            assert len(os.listdir("/proc/self/fd")) <= before  # the fds that came with them were closed
            assert sup.direct_stats()["lost"] == 1
            # the channel still works
            ok, other = pass_new(sup, b"echo still\n")
            assert ok and recv(other, 5) == b"still"
            for sock in (client, other):
                sock.close()

    with caplog.at_level(logging.WARNING, logger="fnserve.supervisor"):
        run(main(), 30)
    warnings = [r for r in caplog.records if "direct-path channel" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


def test_pass_connection_false_when_not_possible(tmp_path):
    target, launcher, log = setup(tmp_path, concurrency=1)

    async def main():
        async with supervisor(target, launcher) as sup:
            assert not passes(sup, b"keep\n") and sup.spawn_count(FID) == 0  # no ready instance; none started for it
            with socket.socket() as any_socket:
                assert not sup.pass_connection("api/unknown.py", any_socket, b"")  # unknown function
            inst = await ready(sup)
            sup.set_direct_plan(lambda fid: None)  # no plan
            assert not passes(sup, b"keep\n") and inst.leases == 0
            sup.set_direct_plan(plan_for)
            ok, client = pass_new(sup, b"keep\n")
            assert ok
            assert not passes(sup, b"keep\n") and inst.leases == 1  # concurrency 1: no free slot
            assert not passes(sup, b"x" * (256 * 1024))  # over the packet size
            closed = socket.socket()
            closed.close()
            client.sendall(b"close\n")
            await until(lambda: inst.leases == 0)
            assert not sup.pass_connection(FID, closed, b"")  # a closed socket: not passed, slot released
            assert inst.leases == 0 and inst.direct_channel is not None
            assert sup.direct_stats()["passed"] == 1
            client.close()

    run(main(), 30)


def test_pass_connection_false_without_a_channel_or_the_direct_path(tmp_path):
    target, launcher, log = setup(tmp_path, "no-direct")

    async def main():
        async with supervisor(target, launcher) as sup:
            inst = await ready(sup, channel=False)
            await asyncio.sleep(0.2)
            assert inst.direct_channel is None and not passes(sup, b"keep\n")
        target2, launcher2, log2 = setup(tmp_path / "off")
        async with supervisor(target2, launcher2, direct=False) as sup:
            await ready(sup, channel=False)
            assert "direct" not in events(log2, "options")[0]["options"] and sup.direct.path == ""
            assert not passes(sup, b"keep\n")

    (tmp_path / "off").mkdir()
    run(main(), 30)


def test_pass_connection_false_when_the_channel_is_full(tmp_path):
    target, launcher, _log = setup(tmp_path, "stall", concurrency=1000)  # the worker never reads its channel

    async def main():
        async with supervisor(target, launcher) as sup:
            inst = await ready(sup)
            client, server = socket.socketpair()
            passed = 0
            while passed < 500 and sup.pass_connection(FID, server, b"x" * 60000):
                passed += 1
            assert 0 < passed < 500  # EAGAIN / ENOBUFS: not passed
            assert inst.leases == passed and sup.direct_stats()["open"] == passed
            assert inst.direct_channel is not None  # a full channel is not a broken one
            client.close()
            server.close()

    run(main(), 30)


def test_a_queued_request_asks_one_idle_connection_back_per_waiter(tmp_path):
    """docs: reclaim: a request waiting for a slot (``Supervisor.lease`` with every slot held by
    passed connections) makes the front send R for the oldest idle one (slot state 0), one per
    waiter, none for a busy one; its H releases the lease to the waiter. A connection that
    ignores R is asked again while the request waits; one that goes idle while it waits is asked
    then; nothing is asked without waiters."""
    target, launcher, log = setup(tmp_path, concurrency=3)

    def asked() -> list[int]:
        return [e["id"] for e in events(log, "reclaim")]

    async def main():
        async with supervisor(target, launcher) as sup:
            back: list[bytes] = []
            sup.on_hand_back = lambda sock, data: (back.append(data), sock.close())
            inst = await ready(sup)
            clients = []
            for command in (b"keep\n", b"busy\n", b"keep\n"):  # idle, busy, idle
                ok, client = pass_new(sup, command)
                assert ok
                clients.append(client)
            await until(lambda: len(events(log, "conn")) == 3)
            first, second, third = (e["id"] for e in events(log, "conn"))
            assert inst.leases == 3 and inst.direct_slots is not None
            assert [inst.direct_slots.state(i & 0xFFFFFFFF) != 0 for i in (first, second, third)] == [False, True, False]
            await asyncio.sleep(0.3)
            assert asked() == []  # no waiter, no R

            # one waiter: one R, for the oldest idle connection; its H gives the waiter its slot
            lease = await asyncio.wait_for(sup.lease(FID), 5)
            assert asked() == [first] and back == [b""] and inst.leases == 3
            assert sup.direct_stats()["handed_back"] == 1 and sup.direct_stats()["open"] == 2
            await asyncio.sleep(0.3)
            assert asked() == [first]  # not more than waiters

            # the idle one ignores R; the busy one goes idle while the request waits
            clients[2].sendall(b"deaf\n")
            await asyncio.sleep(0.1)
            waiting = asyncio.ensure_future(sup.lease(FID))
            await until(lambda: asked().count(third) >= 2)  # asked, ignored, asked again
            assert not waiting.done() and second not in asked()
            clients[1].sendall(b"idle\n")
            other = await asyncio.wait_for(waiting, 5)
            assert asked()[-1] == second and sup.direct_stats()["handed_back"] == 2
            lease.release()
            other.release()
            count = len(asked())
            await asyncio.sleep(0.4)
            assert len(asked()) == count  # no waiter left: no more R
            clients[2].sendall(b"close\n")  # the connection that ignored R ends: nothing of it is left
            await until(lambda: inst.leases == 0)
            assert sup.direct._asked == {} and sup.direct_stats()["open"] == 0
            for client in clients:
                client.close()

    run(main(), 30)


@pytest.fixture(autouse=True)
def _no_leftovers(tmp_path):
    """Every stand-in worker is stopped with its supervisor (only this test's: other test runs
    on the machine have stand-ins of their own)."""
    folder = str(tmp_path).encode() + b"/"
    before = {int(p) for p in os.listdir("/proc") if p.isdigit()}
    yield
    children = [int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) not in before]
    mine = []
    for pid in children:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmdline = f.read()
                if b"fake_worker.py" in cmdline and folder in cmdline:
                    mine.append(pid)
        except OSError:
            pass
    assert not [pid for pid in mine if pid_alive(pid)]


def test_a_connection_that_ignores_r_goes_behind_the_others(tmp_path: Path) -> None:
    """Review finding (task V): the oldest idle-looking connection ignored R and kept being asked
    (7 times) while a younger idle one never was; the queued request timed out. Now one asked
    without answer goes behind those never asked: the younger one is asked and the request gets
    its slot."""
    target, launcher, log = setup(tmp_path, concurrency=2)

    async def main() -> None:
        async with supervisor(target, launcher, queue_timeout=2.0) as sup:
            await ready(sup)
            clients = []
            for command in (b"keep\n", b"keep\n"):
                ok, client = pass_new(sup, command)
                assert ok
                clients.append(client)
            await until(lambda: len(events(log, "conn")) == 2)
            first, second = (e["id"] for e in events(log, "conn"))
            clients[0].sendall(b"deaf\n")  # the oldest: idle in its slot, ignores R
            await asyncio.sleep(0.2)
            lease = await asyncio.wait_for(sup.lease(FID), 5)
            lease.release()
            asked = [e["id"] for e in events(log, "reclaim")]
            assert asked.count(second) >= 1 and asked.count(first) <= 2, asked
            for c in clients:
                c.close()

    run(main(), 30)
