"""The direct path, worker side (``runtime.direct``): a real worker process serving client
connections that a stand-in front (``Front`` below) passes it over SOCK_SEQPACKET with
``socket.send_fds``, exactly as docs/ARCHITECTURE.md "direct path" describes; clients are httpx and
raw sockets on 127.0.0.1 port 0."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import random
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from ipc_support import make_project

from fnserve.project.matcher import RouteTable
from fnserve.project.types import Entry, EntryKind, Function, Layout, Route, Segment
from fnserve.runtime import frames, h1conn
from fnserve.runtime import h1exchange as direct_http
from fnserve.runtime.protocol import Connection
from fnserve.supervisor.launch import BOOTSTRAP, RUNTIME_DIR
from fnserve.supervisor.target import WorkerTarget

ASGI = '''
import asyncio, json

def enc(scope):
    out = {}
    for k, v in scope.items():
        if k == "headers":
            v = [[a.decode("latin-1"), b.decode("latin-1")] for a, b in v]
        elif isinstance(v, bytes):
            v = v.decode("latin-1")
        elif isinstance(v, tuple):
            v = list(v)
        out[k] = v
    return json.dumps(out).encode()

async def body_of(receive):
    chunks = []
    while True:
        m = await receive()
        if m["type"] != "http.request":
            return None
        chunks.append(m.get("body", b""))
        if not m.get("more_body"):
            return b"".join(chunks)

async def answer(send, status, body, headers=()):
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body)), *headers]})
    await send({"type": "http.response.body", "body": body})

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            await send({"type": m["type"] + ".complete"})
            if m["type"] == "lifespan.shutdown":
                return
    path = scope["path"]
    last = path.rsplit("/", 1)[-1]
    if any(k == b"x-scope" for k, _ in scope["headers"]):
        await answer(send, 200, enc(scope))
    elif last == "echo":
        body = await body_of(receive)
        await answer(send, 200, b"%d:" % len(body) + body[:32] + body[-32:])
    elif last == "ignore-body":
        await answer(send, 200, b"ignored")
    elif last == "stream":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": b"chunk%d;" % i, "more_body": True})
            await asyncio.sleep(0.05)
        await send({"type": "http.response.body", "body": b""})
    elif last == "raise-before":
        raise RuntimeError("secret text")
    elif last == "raise-after":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("after start")
    elif last == "no-response":
        return
    elif last == "slow":
        await asyncio.sleep(float(scope["query_string"] or b"1"))
        await answer(send, 200, b"slow done")
    elif last == "close":
        await answer(send, 200, b"bye", [(b"connection", b"close")])
    elif last == "inject":
        await answer(send, 200, b"x", [(b"x-a", b"1\\r\\nx-injected: yes")])
    elif last == "own-chunked":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"Transfer-Encoding", b"chunked")]})
        await send({"type": "http.response.body", "body": b"ab", "more_body": True})
        await send({"type": "http.response.body", "body": b"c"})
    elif last == "empty":
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    elif last == "wait-disconnect":
        await answer(send, 200, b"done")
        m = await receive()
        assert m["type"] == "http.disconnect", m
    else:
        await answer(send, 200, b"ok:" + scope["raw_path"] + b"?" + scope["query_string"])
'''

WSGI = '''
def app(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    out = b"wsgi:%s:%s:%d" % (environ["PATH_INFO"].encode("latin-1"), environ["QUERY_STRING"].encode(), len(body))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(out)))])
    return [out]
'''

HANDLER = '''
from http.server import BaseHTTPRequestHandler

class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        out = b"handler:" + self.path.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
'''

A, B, W, HND = "api/a.py", "api/b.py", "api/w.py", "api/h.py"


def _function(root: Path, rel: str, kind: EntryKind, attr: str) -> Function:
    return Function(id=rel, path=root / rel, module=rel[:-3].replace("/", "."), layout=Layout.VERCEL,
                    entry=Entry(kind, attr, 1), import_roots=(root,))


def _routes(root: Path) -> list[Route]:
    a, b = _function(root, A, EntryKind.APP, "app"), _function(root, B, EntryKind.APP, "app")
    w, h = _function(root, W, EntryKind.APP, "app"), _function(root, HND, EntryKind.HANDLER, "handler")
    lit = lambda *xs: tuple(Segment("literal", x) for x in xs)  # noqa: E731
    return [
        Route("/api/a", lit("api", "a"), a, mount=True),
        Route("/api/a/other", lit("api", "a", "other"), b),
        Route("/api/items/[id]", (*lit("api", "items"), Segment("param", "id")), a),
        Route("/api/docs/[...slug]", (*lit("api", "docs"), Segment("catchall", "slug")), a),
        Route("/api/w", lit("api", "w"), w, mount=True),
        Route("/api/h", lit("api", "h"), h),
    ]


def make_plan(root: Path, function_id: str, **over: Any) -> dict[str, Any]:
    """The plan as the front builds it (interfaces §3) from the project's routes."""
    from fnserve.server.app import vercel_query_keys

    routes = []
    for r in _routes(root):
        match = RouteTable([r]).match(r.static_prefix or "/")
        routes.append({"pattern": r.pattern, "segments": [[s.kind, s.value] for s in r.segments], "mount": r.mount,
                       "function": r.function.id, "root_path": match.root_path if match else "",
                       "layout": r.function.layout.value, "query_keys": vercel_query_keys(r)})
    plan = {"version": 1, "function": function_id, "routes": routes, "exclude": ["/favicon.ico", "/api/a/static/"],
            "body_limit": 4718592, "header_limit": 65536, "header_count": 100, "header_timeout": 10.0,
            "keep_alive": 5.0, "body_timeout": 30.0, "max_duration": 10.0, "public_errors": True}
    plan.update(over)
    return plan


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("direct")
    return make_project(root, {A: ASGI, B: ASGI, W: WSGI, HND: HANDLER})


class Front:
    """A stand-in front: the frames server (workers.sock), the direct channel (direct.sock) and a
    TCP listener whose every connection is passed to the worker after its first read. Runs its
    own event loop in a thread. ``packets``: H/X packets from the worker as ``(kind, conn_id,
    data, socket|None)``; ``controls``: ``(ftype, obj)`` from the worker."""

    def __init__(self, root: Path, tmp: Path, function_id: str, kind: EntryKind = EntryKind.APP,
                 attr: str = "app", plan: dict[str, Any] | None = None, pass_connections: bool = True,
                 send_plan: bool = True, answer_hand_backs: bool = False, python: str = sys.executable) -> None:
        self.root, self.tmp, self.function_id = root, tmp, function_id
        self.spec = dict(WorkerTarget.from_function(_function(root, function_id, kind, attr), root).spec)
        self.plan = (plan if plan is not None else make_plan(root, function_id)) if send_plan else None
        self.pass_connections = pass_connections
        self.python = python
        self.answer_hand_backs = answer_hand_backs  # serve a handed-back connection: 299 and close
        self.packets: queue.Queue[tuple[str, int, bytes, socket.socket | None]] = queue.Queue()
        self.controls: list[tuple[int, Any]] = []
        self.passed: dict[int, bytes] = {}
        self.ready = threading.Event()
        self.loop = asyncio.new_event_loop()
        self.conn: Connection | None = None
        self.chan: socket.socket | None = None
        self.next_id = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Front:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._setup(), self.loop).result(10)
        if not self.ready.wait(20):
            raise AssertionError("worker not ready: " + self.log())
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def log(self) -> str:
        path = self.tmp / "worker.log"
        return path.read_text(errors="replace") if path.exists() else ""

    async def _setup(self) -> None:
        loop = asyncio.get_running_loop()
        frames_path, direct_path = str(self.tmp / "workers.sock"), str(self.tmp / "direct.sock")
        await loop.create_unix_server(self._new_connection, frames_path)
        lsn = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        lsn.bind(direct_path)
        lsn.listen()
        lsn.setblocking(False)
        self.direct_listener = lsn
        loop.add_reader(lsn.fileno(), self._accept_channel)
        tcp = socket.socket()
        tcp.bind(("127.0.0.1", 0))
        tcp.listen(64)
        tcp.setblocking(False)
        self.tcp = tcp
        self.port = tcp.getsockname()[1]
        loop.add_reader(tcp.fileno(), self._accept_client)
        options = {"socket": frames_path, "token": "tok1", "heartbeat": 0.2, "stop_timeout": 3.0,
                   "direct": direct_path}
        log = open(self.tmp / "worker.log", "wb")
        self.proc = subprocess.Popen(
            [self.python, "-I", "-u", "-c", BOOTSTRAP, str(RUNTIME_DIR), json.dumps(self.spec), json.dumps(options)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=str(self.root))
        log.close()

    def _new_connection(self) -> Connection:
        self.conn = Connection(self._on_control, None, None)
        return self.conn

    def _on_control(self, ftype: int, obj: Any) -> None:
        self.controls.append((ftype, obj))
        if ftype == frames.READY:
            if self.plan is not None and self.conn is not None:
                self.conn.send_control(frames.DIRECT_PLAN, self.plan)
                self.conn.flush()
            self.loop.call_later(0.1, self.ready.set)

    def _accept_channel(self) -> None:
        chan, _ = self.direct_listener.accept()
        chan.setblocking(True)
        hello = chan.recv(1024)
        assert hello == b"Ttok1", hello
        chan.setblocking(False)
        self.chan = chan
        self.loop.add_reader(chan.fileno(), self._channel_readable)

    def _channel_readable(self) -> None:
        assert self.chan is not None
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(self.chan, 300_000, 2)
            except BlockingIOError:
                return
            if not data:
                self.loop.remove_reader(self.chan.fileno())
                return
            kind, conn_id = data[:1].decode(), int.from_bytes(data[1:9], "big")
            sock = socket.socket(fileno=fds[0]) if fds else None
            if sock is not None and self.answer_hand_backs:
                sock.setblocking(True)
                sock.sendall(b"HTTP/1.1 299 front\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                sock.close()
                continue
            self.packets.put((kind, conn_id, data[9:], sock))

    def _accept_client(self) -> None:
        client, _ = self.tcp.accept()
        client.setblocking(False)
        self.loop.add_reader(client.fileno(), self._first_read, client)

    def _first_read(self, client: socket.socket) -> None:
        self.loop.remove_reader(client.fileno())
        data = client.recv(65536)
        if not data or not self.pass_connections or self.chan is None:
            client.close()
            return
        self.next_id += 1
        self.passed[self.next_id] = data
        socket.send_fds(self.chan, [b"C" + self.next_id.to_bytes(8, "big") + data], [client.fileno()])
        client.close()

    def send_packet(self, packet: bytes, fds: tuple[int, ...] = ()) -> None:
        """Send one packet to the worker on the direct channel (from the front's loop; waits for it)."""
        async def do() -> None:
            assert self.chan is not None
            socket.send_fds(self.chan, [packet], list(fds))
        asyncio.run_coroutine_threadsafe(do(), self.loop).result(5)

    def reclaim(self, conn_id: int) -> None:
        """Packet R: the worker hands ``conn_id`` back if it is idle."""
        self.send_packet(b"R" + conn_id.to_bytes(8, "big"))

    def send_control(self, ftype: int, obj: Any) -> None:
        def do() -> None:
            assert self.conn is not None
            self.conn.send_control(ftype, obj)
            self.conn.flush()
        self.loop.call_soon_threadsafe(do)

    def control_of(self, ftype: int, timeout: float = 3.0) -> list[Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [obj for t, obj in list(self.controls) if t == ftype]
            if found:
                return found
            time.sleep(0.02)
        return []

    def reports(self, count: int, timeout: float = 3.0) -> list[list[Any]]:
        deadline = time.monotonic() + timeout
        while True:
            rows = [row for t, obj in list(self.controls) if t == frames.REPORT for row in obj["requests"]]
            if len(rows) >= count or time.monotonic() > deadline:
                return rows
            time.sleep(0.02)

    def packet(self, timeout: float = 5.0) -> tuple[str, int, bytes, socket.socket | None]:
        return self.packets.get(timeout=timeout)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            if self.conn is not None:
                self.send_control(frames.STOP, {"timeout": 2.0})
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def raw(port: int, data: bytes, *, timeout: float = 3.0, until_close: bool = True) -> bytes:
    """Send ``data`` in one write on a new connection; read until the server closes it (or
    ``timeout`` passes)."""
    with socket.create_connection(("127.0.0.1", port)) as c:
        c.sendall(data)
        c.settimeout(timeout)
        out = b""
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                out += chunk
        except TimeoutError:
            if until_close:
                raise
        return out


def responses(data: bytes) -> list[tuple[int, dict[bytes, bytes], bytes]]:
    """Split raw HTTP/1.1 responses (Content-Length or chunked bodies)."""
    out = []
    while data:
        end = data.index(b"\r\n\r\n")
        lines = data[:end].split(b"\r\n")
        status = int(lines[0].split()[1])
        headers = {k.lower(): v for k, _, v in (line.partition(b": ") for line in lines[1:])}
        data = data[end + 4:]
        if b"content-length" in headers:
            n = int(headers[b"content-length"])
            body, data = data[:n], data[n:]
        elif headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while True:
                size_end = data.index(b"\r\n")
                n = int(data[:size_end], 16)
                body += data[size_end + 2:size_end + 2 + n]
                data = data[size_end + 2 + n + 2:]
                if n == 0:
                    break
        else:
            body = b""
        out.append((status, headers, body))
    return out


def get(path: str, extra: bytes = b"") -> bytes:
    return b"GET %s HTTP/1.1\r\nhost: t\r\n%s\r\n" % (path.encode(), extra)


@pytest.fixture
def front(project: Path, tmp_path: Path) -> Any:
    with Front(project, tmp_path, A) as f:
        yield f


# -- serving


def test_keep_alive_many_requests_one_connection(front):
    with httpx.Client(base_url=f"http://127.0.0.1:{front.port}") as client:
        for i in range(50):
            r = client.get(f"/api/a/x{i}", params={"q": str(i)})
            assert (r.status_code, r.text) == (200, f"ok:/api/a/x{i}?q={i}")
            assert len(r.headers["x-fnserve-request-id"]) == 16
            assert "date" in r.headers
    assert len(front.passed) == 1  # one connection, passed once, every request served by the worker
    rows = front.reports(50)
    assert [row[3] for row in rows] == [200] * 50
    assert rows[0][1:3] == ["GET", "/api/a/x0?q=0"]
    assert isinstance(rows[0][4], float) and rows[0][4] >= 0
    assert front.packet()[:2] == ("X", 1)  # httpx closed it: the lease is released


def test_pipelined_requests_are_served_in_order(front):
    data = b"".join(get(f"/api/a/p{i}") for i in range(10)) + get("/api/a/close")
    got = responses(raw(front.port, data))
    assert [b for _, _, b in got] == [b"ok:/api/a/p%d?" % i for i in range(10)] + [b"bye"]


def test_post_bodies_small_and_over_one_mib(front):
    big = os.urandom(3 * 1024 * 1024 + 7)
    with httpx.Client(base_url=f"http://127.0.0.1:{front.port}") as client:
        assert client.post("/api/a/echo", content=b"hello").content == b"5:hellohello"
        r = client.post("/api/a/echo", content=big)
        assert r.content == b"%d:" % len(big) + big[:32] + big[-32:]
        r = client.post("/api/a/ignore-body", content=b"z" * 100_000)  # the app never reads it
        assert r.text == "ignored"
        assert client.get("/api/a/after").text == "ok:/api/a/after?"
    assert len(front.passed) == 1


def test_route_params_in_the_query_as_the_frames_path(front):
    with httpx.Client(base_url=f"http://127.0.0.1:{front.port}") as client:
        assert client.get("/api/items/42?y=2").text == "ok:/api/items/42?y=2&id=42"
        assert client.get("/api/docs/a/b%20c").text == "ok:/api/docs/a/b%20c?...slug=a%2Fb%20c"


def test_head_204_and_streaming_response(front):
    data = (b"HEAD /api/a/x HTTP/1.1\r\nhost: t\r\n\r\n" + get("/api/a/empty") + get("/api/a/stream")
            + get("/api/a/close"))
    out = raw(front.port, data)
    head_end = out.index(b"\r\n\r\n") + 4
    assert out.startswith(b"HTTP/1.1 200 OK\r\n") and b"content-length: 12\r\n" in out[:head_end]
    assert out[head_end:].startswith(b"HTTP/1.1 204 No Content\r\n")  # no body after the HEAD answer
    rest = out[head_end:]
    second = rest.index(b"\r\n\r\n") + 4
    assert b"transfer-encoding" not in rest[:second]
    got = responses(rest[second:])
    assert got[0][1][b"transfer-encoding"] == b"chunked" and got[0][2] == b"chunk0;chunk1;chunk2;"
    assert got[1][2] == b"bye"


def test_response_header_injection_never_reaches_the_client(front):
    out = raw(front.port, get("/api/a/inject"))
    assert b"x-injected" not in out and b"HTTP/1.1 200" not in out
    assert "Invalid HTTP header" in front.log()


def test_app_chunked_header_is_framed_once(front):
    got = responses(raw(front.port, get("/api/a/own-chunked") + get("/api/a/close")))
    assert got[0][1][b"transfer-encoding"] == b"chunked" and got[0][2] == b"abc"
    assert got[1][2] == b"bye"


def test_connection_close_both_ways(front):
    out = raw(front.port, get("/api/a/x", b"connection: close\r\n"))
    assert b"connection: close\r\n" in out and out.endswith(b"ok:/api/a/x?")
    out = raw(front.port, get("/api/a/close"))
    assert out.endswith(b"bye")
    kinds = [front.packet()[0] for _ in range(2)]
    assert kinds == ["X", "X"]


def test_http_disconnect_after_the_response(front):
    assert raw(front.port, get("/api/a/wait-disconnect", b"connection: close\r\n")).endswith(b"done")
    time.sleep(0.2)
    assert "AssertionError" not in front.log()


# -- errors


def test_app_raising_before_the_response_gets_the_front_500(front):
    with httpx.Client(base_url=f"http://127.0.0.1:{front.port}") as client:
        r = client.get("/api/a/raise-before", headers={"x-request-id": "my-id-1"})
        assert r.status_code == 500
        assert r.json() == {"error": {"code": "FUNCTION_INVOCATION_FAILED",
                                      "message": direct_http.ERROR_STRINGS["public_500"], "request_id": "my-id-1"}}
        assert r.headers["x-fnserve-error"] == "FUNCTION_INVOCATION_FAILED"
        assert r.headers["cache-control"] == "no-store"
        assert r.headers["x-fnserve-request-id"] == "my-id-1"
        assert client.get("/api/a/x").status_code == 200  # the connection stays usable
    assert "RuntimeError: secret text" in front.log()


def test_app_raising_after_start_closes_the_connection(front):
    out = raw(front.port, get("/api/a/raise-after") + get("/api/a/x"))
    assert out.startswith(b"HTTP/1.1 200 OK") and b"partial" in out and b"ok:/api/a/x" not in out
    assert front.packet()[0] == "X"
    assert front.reports(1)[0][3] == 0  # no complete response


def test_app_returning_without_a_response_is_uvicorns_500(front):
    out = raw(front.port, get("/api/a/no-response"))
    status, headers, body = responses(out)[0]
    assert (status, body, headers[b"connection"]) == (500, b"Internal Server Error", b"close")


def test_max_duration_answers_504_and_sends_expired(project, tmp_path):
    with Front(project, tmp_path, A, plan=make_plan(project, A, max_duration=0.3)) as front:
        t0 = time.monotonic()
        out = raw(front.port, get("/api/a/slow", b"x-request-id: slow-1\r\n").replace(b"slow ", b"slow?5 "))
        assert time.monotonic() - t0 < 2.0
        status, headers, body = responses(out)[0]
        assert status == 504 and headers[b"connection"] == b"close"
        assert json.loads(body) == {"error": {"code": "FUNCTION_INVOCATION_TIMEOUT", "request_id": "slow-1",
                                              "message": f"{A} did not answer within its maxDuration of 0.3 s"}}
        assert front.control_of(frames.EXPIRED) == [{"limit": 0.3}]
        assert front.reports(1)[0][3] == 504


def test_body_timeout_answers_408(project, tmp_path):
    with Front(project, tmp_path, A, plan=make_plan(project, A, body_timeout=0.3)) as front:
        out = raw(front.port, b"POST /api/a/echo HTTP/1.1\r\nhost: t\r\ncontent-length: 10\r\n\r\nabc")
        assert out.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert out.endswith(b"Request body stalled for 0.3 s.")


def test_idle_keep_alive_connection_is_closed(project, tmp_path):
    with Front(project, tmp_path, A, plan=make_plan(project, A, keep_alive=0.3)) as front:
        t0 = time.monotonic()
        out = raw(front.port, get("/api/a/x"))
        assert out.endswith(b"ok:/api/a/x?") and 0.25 < time.monotonic() - t0 < 2.0
        assert front.packet()[0] == "X"


# -- hand-back


HANDED_BACK = {
    "other function": get("/api/a/other"),
    "excluded static": get("/api/a/static/logo.png"),
    "excluded exact": get("/favicon.ico"),
    "no route": get("/nowhere"),
    "chunked request": b"POST /api/a/echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "upgrade": get("/api/a/ws", b"connection: upgrade\r\nupgrade: websocket\r\n"),
    "expect": b"POST /api/a/echo HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\nexpect: 100-continue\r\n\r\n",
    "http/1.0": b"GET /api/a/x HTTP/1.0\r\n\r\n",
    "absolute form": b"GET http://t/api/a/x HTTP/1.1\r\nhost: t\r\n\r\n",
    "duplicate length": b"POST /api/a/echo HTTP/1.1\r\ncontent-length: 1\r\ncontent-length: 1\r\n\r\nab",
    "bad length": b"POST /api/a/echo HTTP/1.1\r\ncontent-length: +1\r\n\r\na",
    "body over limit": b"POST /api/a/echo HTTP/1.1\r\ncontent-length: 4718593\r\n\r\nabc",
    "obs-fold": get("/api/a/x", b"x-a: 1\r\n  folded\r\n"),
    "bare lf": b"GET /api/a/x HTTP/1.1\nhost: t\r\n\r\n",
    "nul": get("/api/a/x", b"x-a: \x00\r\n"),
    "space before colon": get("/api/a/x", b"x-a : 1\r\n"),
    "oversize header": get("/api/a/x", b"x-big: " + b"b" * 70_000 + b"\r\n"),
    "garbage": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n",
}


@pytest.mark.parametrize("case", list(HANDED_BACK))
def test_hand_back_after_a_served_request_carries_the_exact_unread_bytes(front, case):
    first = get("/api/a/first")
    data = first + HANDED_BACK[case]
    with socket.create_connection(("127.0.0.1", front.port)) as c:
        c.sendall(data)
        kind, conn_id, unread, sock = front.packet()
        assert kind == "H" and sock is not None
        assert unread == data[len(first):len(first) + len(unread)]
        assert unread == HANDED_BACK[case][:len(unread)] and len(unread) >= min(len(HANDED_BACK[case]), 60_000)
        # the front serves the rest on the socket it got back; the client sees both answers in order
        sock.sendall(b"HTTP/1.1 299 front\r\ncontent-length: 5\r\nconnection: close\r\n\r\nfront")
        sock.close()
        c.settimeout(3)
        out = b""
        while not out.endswith(b"front"):
            chunk = c.recv(65536)
            assert chunk, out
            out += chunk
    got = responses(out)
    assert [(s, b) for s, _, b in got] == [(200, b"ok:/api/a/first?"), (299, b"front")]


def test_first_request_not_ours_is_handed_back_unchanged(front):
    with socket.create_connection(("127.0.0.1", front.port)) as c:
        c.sendall(get("/api/a/other"))
        kind, _, unread, sock = front.packet()
        assert (kind, unread) == ("H", get("/api/a/other"))
        assert sock is not None
        sock.close()


def test_no_plan_means_every_connection_is_handed_back(project, tmp_path):
    with Front(project, tmp_path, A, send_plan=False) as front:
        with socket.create_connection(("127.0.0.1", front.port)) as c:
            c.sendall(get("/api/a/x"))
            kind, _, unread, sock = front.packet()
            assert (kind, unread) == ("H", get("/api/a/x"))
            assert sock is not None
            sock.close()
        front.send_control(frames.DIRECT_PLAN, make_plan(project, A))  # the plan comes: served from now on
        time.sleep(0.2)
        assert raw(front.port, get("/api/a/x", b"connection: close\r\n")).endswith(b"ok:/api/a/x?")


def test_a_new_plan_applies_from_the_next_request(front, project):
    with httpx.Client(base_url=f"http://127.0.0.1:{front.port}") as client:
        assert client.get("/api/a/x").status_code == 200
        front.send_control(frames.DIRECT_PLAN, make_plan(project, A, exclude=["/api/a/x"]))
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", front.port)) as c:
            c.sendall(get("/api/a/y") + get("/api/a/x"))
            kind, _, unread, sock = front.packet()
            assert (kind, unread) == ("H", get("/api/a/x"))
            assert sock is not None
            sock.close()


def test_stop_hands_back_idle_connections_and_busy_ones_after_their_response(front):
    idle = socket.create_connection(("127.0.0.1", front.port))
    busy = socket.create_connection(("127.0.0.1", front.port))
    try:
        idle.sendall(get("/api/a/x"))
        idle.settimeout(3)
        assert idle.recv(65536).endswith(b"ok:/api/a/x?")
        busy.sendall(get("/api/a/slow").replace(b"slow ", b"slow?0.5 ") + get("/api/a/next"))
        time.sleep(0.2)
        front.send_control(frames.STOP, {"timeout": 3.0})
        packets = [front.packet(), front.packet()]
        assert [(k, d) for k, _, d, _ in packets] == [("H", b""), ("H", get("/api/a/next"))]
        busy.settimeout(3)
        assert b"slow done" in busy.recv(65536)
        for _, _, _, sock in packets:
            assert sock is not None
            sock.close()
        assert front.proc is not None and front.proc.wait(5) == 0
    finally:
        idle.close()
        busy.close()


def test_reclaim_hands_back_an_idle_connection_with_the_unread_bytes_of_its_next_request(front):
    """Packet R (a request waits for a slot on the front): an idle connection goes back at once,
    with what it read of a next request; one with nothing buffered, with no bytes."""
    partial = b"GET /api/a/y HTTP/1.1\r\nho"
    with socket.create_connection(("127.0.0.1", front.port)) as c, \
            socket.create_connection(("127.0.0.1", front.port)) as empty:
        c.settimeout(3)
        empty.settimeout(3)
        c.sendall(get("/api/a/x") + partial)
        assert c.recv(65536).endswith(b"ok:/api/a/x?")
        empty.sendall(get("/api/a/e"))
        assert empty.recv(65536).endswith(b"ok:/api/a/e?")
        assert front.passed[1].startswith(get("/api/a/x")) and front.passed[2] == get("/api/a/e")
        time.sleep(0.1)  # the partial head is read
        front.reclaim(1)
        kind, conn_id, unread, sock = front.packet()
        assert (kind, conn_id, unread) == ("H", 1, partial) and sock is not None
        front.reclaim(2)
        kind, conn_id, unread, back = front.packet()
        assert (kind, conn_id, unread) == ("H", 2, b"") and back is not None
        # the front serves the rest on the socket it got back
        sock.sendall(b"HTTP/1.1 299 front\r\ncontent-length: 5\r\n\r\nfront")
        assert c.recv(65536).endswith(b"front")
        for s in (sock, back):
            s.close()
    rows = front.reports(2)
    assert sorted(row[2] for row in rows) == ["/api/a/e", "/api/a/x"]


def test_reclaim_is_ignored_for_a_busy_or_unknown_connection(front):
    """R for a connection whose request is in progress, for an unknown id, malformed or carrying a
    descriptor: nothing happens (the descriptor is closed); R once it is idle: handed back."""
    assert front.proc is not None
    fds = f"/proc/{front.proc.pid}/fd"
    with socket.create_connection(("127.0.0.1", front.port)) as c:
        c.settimeout(3)
        c.sendall(get("/api/a/first"))
        assert c.recv(65536).endswith(b"ok:/api/a/first?")  # adopted: its descriptor is counted below
        before = len(os.listdir(fds))
        c.sendall(get("/api/a/slow").replace(b"slow ", b"slow?0.5 "))
        time.sleep(0.2)  # the app runs
        front.reclaim(1)  # busy
        front.reclaim(99)  # unknown
        front.send_packet(b"R\x00\x01")  # too short
        r, w = os.pipe()
        try:
            front.send_packet(b"R" + (99).to_bytes(8, "big"), (r,))  # with a descriptor: closed
        finally:
            os.close(r)
            os.close(w)
        assert c.recv(65536).endswith(b"slow done")
        time.sleep(0.2)
        assert front.packets.empty()
        assert len(os.listdir(fds)) <= before
        c.sendall(get("/api/a/z"))  # still the worker's
        assert c.recv(65536).endswith(b"ok:/api/a/z?")
        front.reclaim(1)  # idle now
        kind, conn_id, unread, sock = front.packet()
        assert (kind, conn_id, unread) == ("H", 1, b"") and sock is not None
        sock.close()


def test_heartbeat_inflight_counts_direct_requests(front):
    with socket.create_connection(("127.0.0.1", front.port)) as c:
        c.sendall(get("/api/a/slow").replace(b"slow ", b"slow?0.8 "))
        time.sleep(0.5)  # heartbeats every 0.2 s
        beats = [obj["inflight"] for t, obj in list(front.controls) if t == frames.HEARTBEAT]
        assert beats and beats[-1] == 1
        c.settimeout(3)
        assert c.recv(65536).endswith(b"slow done")


def test_client_leaving_mid_request_reports_status_0(front):
    c = socket.create_connection(("127.0.0.1", front.port))
    c.sendall(get("/api/a/slow").replace(b"slow ", b"slow?0.3 "))
    time.sleep(0.1)
    c.close()
    assert front.packet()[0] == "X"
    rows = front.reports(1)
    assert rows and rows[0][3] == 0


def test_garbled_heads_never_crash_the_worker(project, tmp_path):
    """Fuzz: random or mutated heads always end in a hand-back (the stand-in front answers 299
    and closes), a response or a close, quickly; the worker keeps serving."""
    plan = make_plan(project, A, header_timeout=0.3, body_timeout=0.3, keep_alive=0.3)
    rng = random.Random(1234)
    seeds = [get("/api/a/x"), b"POST /api/a/echo HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc", *HANDED_BACK.values()]
    with Front(project, tmp_path, A, plan=plan, answer_hand_backs=True) as front:
        for _ in range(150):
            data = bytearray(rng.choice(seeds)[:2000])
            for _ in range(rng.randint(1, 6)):
                op, pos = rng.random(), rng.randrange(len(data) + 1)
                if op < 0.4:
                    data[pos:pos] = bytes([rng.choice(b"\r\n\x00 :/?%#\t\x7f\xffaZ0")])
                elif op < 0.7 and data:
                    del data[pos:pos + rng.randint(1, 4)]
                else:
                    data[pos:pos] = rng.randbytes(rng.randint(1, 8))
            out = raw(front.port, bytes(data) + get("/api/a/close"), timeout=3.0)
            assert out == b"" or out.startswith(b"HTTP/1.1 "), (bytes(data), out[:80])
        assert front.proc is not None and front.proc.poll() is None
        assert raw(front.port, get("/api/a/x", b"connection: close\r\n")).endswith(b"ok:/api/a/x?")
        assert "Traceback" not in front.log()


# -- other kinds of function


def test_wsgi_function(project, tmp_path):
    with Front(project, tmp_path, W) as front, httpx.Client(base_url=f"http://127.0.0.1:{front.port}") as client:
        assert client.get("/api/w/p?a=1").text == "wsgi:/api/w/p:a=1:0"
        assert client.post("/api/w/p", content=b"x" * 2_000_000).text == "wsgi:/api/w/p::2000000"
        assert len(front.passed) == 1


def test_handler_class_function(project, tmp_path):
    with Front(project, tmp_path, HND, kind=EntryKind.HANDLER, attr="handler") as front, \
            httpx.Client(base_url=f"http://127.0.0.1:{front.port}") as client:
        for _ in range(3):
            assert client.get("/api/h?x=1").text == "handler:/api/h?x=1"
        assert len(front.passed) == 1


PYTHONS = [f"/root/.pyenv/versions/{v}/bin/python" for v in ("3.9.18", "3.13.0")]


@pytest.mark.parametrize("python", PYTHONS, ids=lambda p: p.split("/")[-3])
def test_direct_path_on_other_pythons(project, tmp_path, python):
    if not Path(python).exists():
        pytest.skip(f"{python} is not installed here")
    with Front(project, tmp_path, A, python=python) as front:
        out = raw(front.port, get("/api/a/x") + b"POST /api/a/echo HTTP/1.1\r\ncontent-length: 3\r\n\r\nabc"
                  + get("/api/a/stream") + get("/api/a/raise-before") + get("/api/a/other"), until_close=False,
                  timeout=1.0)
        got = responses(out)
        assert [(s, b) for s, _, b in got[:3]] == [(200, b"ok:/api/a/x?"), (200, b"3:abcabc"),
                                                   (200, b"chunk0;chunk1;chunk2;")]
        assert got[3][0] == 500
        kind, _, unread, sock = front.packet()
        assert (kind, unread) == ("H", get("/api/a/other"))
        assert sock is not None
        sock.close()
        assert front.reports(4)


# -- the same scope and the same strings as the frames path


def test_scope_is_the_one_the_frames_path_gives(front, project):
    """Both scopes for one request: the direct one (echoed by the app in the worker) and the one the
    frames path gives (uvicorn's scope → ``observe.Observed`` → ``app.function_scope`` → the
    frames codec), compared key by key."""
    import uvicorn

    from fnserve.server.app import function_scope
    from fnserve.server.observe import Observed

    captured: list[dict[str, Any]] = []

    async def capture(scope, receive, send):
        if scope["type"] == "http":
            captured.append(dict(scope, headers=list(scope["headers"])))
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

    config = uvicorn.Config(Observed(capture, None), host="127.0.0.1", port=0, lifespan="off", log_level="warning",
                            http="httptools", server_header=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            time.sleep(0.01)
        uport = server.servers[0].sockets[0].getsockname()[1]
        table = RouteTable(_routes(project))
        for target, extra in [("/api/a/scope?x=1&y=%20", b"x-request-id: abc-1\r\nX-Multi: 1\r\nx-multi: 2\r\n"),
                              ("/api/items/caf%C3%A9?z", b""),
                              ("/api/a/%7Euser/x%2Fy/", b""),
                              ("/api/docs/a%2Fb/c?q", b"x-request-id: bad id!\r\nuser-agent:  spaced  \r\n")]:
            request = b"GET %s HTTP/1.1\r\nhost: t\r\nx-scope: 1\r\n%sconnection: close\r\n\r\n" % (
                target.encode(), extra)
            raw(uport, request)
            front_scope = captured.pop()
            match = table.match(front_scope["path"])
            assert match is not None and match.function.id == A
            expected = frames.decode_scope(frames.encode_scope(function_scope(front_scope, match)))
            got = frames.decode_scope(responses(raw(front.port, request))[0][2])
            for scope in (expected, got):
                assert isinstance(scope["client"], tuple) and isinstance(scope["server"], tuple)
                scope["client"] = scope["server"] = None
                if b"abc-1" not in extra:  # a fresh random id on each side
                    scope["headers"] = [(k, b"*" if k == b"x-request-id" else v) for k, v in scope["headers"]]
            assert got == expected
    finally:
        server.should_exit = True
        thread.join(5)


def test_error_strings_are_the_fronts():
    from fnserve.errors import DurationExceeded, FunctionFailed
    from fnserve.server import errorpages, observe

    strings = direct_http.ERROR_STRINGS
    assert strings["public_500"] == FunctionFailed.PUBLIC_MESSAGE
    assert strings["raised_500"] % ("api/a.py", "ValueError: x") == FunctionFailed("api/a.py", "ValueError: x").message
    assert strings["timeout_504"] % ("api/a.py", "%g" % 2.5) == DurationExceeded("api/a.py", 2.5).message
    assert strings["cut_off_503"] == observe.CUT_OFF_MESSAGE
    assert direct_http.RUNTIME_CODES == observe.RUNTIME_CODES
    assert direct_http.RUNTIME_STATUSES == observe._RUNTIME_STATUSES
    assert direct_http.HELD_LIMIT == observe._HELD_LIMIT
    assert h1conn.VALID_REQUEST_ID.pattern == observe._VALID_ID.pattern
    for status, code in direct_http.ERROR_CODES.items():
        assert errorpages.CODES[status][0] == code
    for status, message, rid in [(500, "m", "id1"), (504, "t", "id2"), (413, "x", None)]:
        assert direct_http.render_error(status, message, rid) == errorpages.render(status, message, request_id=rid)
    body = json.dumps({"error": {"code": "function_error", "message": "boom"}}).encode()
    for public in (True, False):
        assert direct_http.runtime_error(500, [(b"x-a", b"1")], body, "rid", public) == \
            observe.runtime_error(500, [(b"x-a", b"1")], body, "rid", public)
    import inspect

    from fnserve.server import frontdoor
    assert 'f"Request body stalled for {self.limits.body_timeout:g} s."' in inspect.getsource(frontdoor)
    assert strings["body_408"] % "30" == "Request body stalled for 30 s."
    assert 'f"Request headers not received within {self.limits.header_timeout:g} s."' in inspect.getsource(frontdoor)
    assert strings["head_408"] % "10" == "Request headers not received within 10 s."


def test_plan_exclusions_root_prefixes_and_rule_patterns():
    from fnserve.runtime.direct import DirectPlan

    route = {"segments": [["literal", "api"], ["param", "id"]], "mount": False, "function": "api/[id].py"}
    plan = DirectPlan({"function": "api/[id].py", "routes": [route], "exclude": ["/", "/static/", "/favicon.ico"],
                       "exclude_patterns": [r"/api/old"]})
    assert plan.route("/api/7") is not None  # "/" (a public/index.html) excludes only "/"
    for front in ("/", "/static/x.css", "/favicon.ico", "/api/old", "/nothing"):
        assert plan.route(front) is None, front
    only_root = DirectPlan({"function": "api/[id].py", "routes": [route], "exclude_patterns": [r"(?:/(.*))?"]})
    assert only_root.route("/api/7") is None  # a catch-all rule source takes every path
    with pytest.raises(ValueError):
        DirectPlan({"function": "f", "exclude_patterns": ["("]})


def test_plan_exclusions_see_paths_as_static_lookups_do():
    from fnserve.runtime.direct import DirectPlan

    route = {"segments": [], "mount": True, "function": "index.py"}  # an app at / (takes every path)
    plan = DirectPlan({"function": "index.py", "routes": [route], "exclude": ["/static/", "/favicon.ico"]})
    assert plan.route("/items/1") is not None
    for front in ("//static/app.js", "/static//app.js", "/favicon.ico/", "/static"):
        assert plan.route(front) is None, front


def test_a_slow_body_is_buffered_before_the_app_runs(project, tmp_path):
    """As the front does (issue 10 item 4): the app (here one that answers without reading) runs
    only once the body came, so a client trickling its body holds no function slot meanwhile."""
    with Front(project, tmp_path, A) as front:
        with socket.create_connection(("127.0.0.1", front.port), timeout=5) as s:
            s.sendall(b"POST /api/a/ignore-body HTTP/1.1\r\nhost: t\r\ncontent-length: 6\r\n\r\nab")
            s.settimeout(0.4)
            with pytest.raises(socket.timeout):
                s.recv(100)  # the app has not run: nothing answered yet
            s.settimeout(5)
            s.sendall(b"cdef")
            assert s.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_head_not_complete_within_header_timeout_gets_the_fronts_408_from_the_worker(project, tmp_path):
    """Review finding (task V): handed back, the partial head waited header_timeout twice (the
    front started its own timer); now the worker answers the front's 408 itself and closes (X)."""
    plan = make_plan(project, A, header_timeout=0.3, keep_alive=5.0)
    with Front(project, tmp_path, A, plan=plan) as front, \
            socket.create_connection(("127.0.0.1", front.port)) as c:
        c.settimeout(5)
        c.sendall(get("/api/a/x") + b"GET /api/a/y HTTP/1.1\r\nho")
        assert c.recv(65536).endswith(b"ok:/api/a/x?")
        t0 = time.monotonic()
        out = b""
        while chunk := c.recv(65536):
            out += chunk
        took = time.monotonic() - t0
        assert out.startswith(b"HTTP/1.1 408 ") and out.endswith(b"\r\n\r\nRequest headers not received within 0.3 s.")
        assert b"connection: close\r\n" in out and 0.2 < took < 1.5, took
        kind, conn_id, unread, sock = front.packet()
        assert (kind, conn_id, sock) == ("X", 1, None)
