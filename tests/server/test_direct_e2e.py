"""The direct path end to end (issue 14 item 2; docs/ARCHITECTURE.md "direct path"): a real
``fnserve start`` on ``tests/projects/direct_basic``, httpx keep-alive clients and raw sockets
where the exact bytes matter.

The front passes a connection whose first request goes straight to a function to an instance of
that function, which serves it itself (``runtime.direct``) and hands it back to the front when a
later request is not its own. What these tests hold it to: clients and functions cannot tell the
direct path from the frames path (``--no-direct-path``, a second server on the same project:
the same status, body and header names; the functions' echoes of what they saw are equal), the
requests are counted and logged as before, and faults (maxDuration, a crashing instance, SIGTERM,
SIGHUP) end as on the frames path. The counters ``fnserve_direct_connections_total{event}``
show which path served. ``tests/projects/direct_edgeone``: the same for the EdgeOne layout.

``xfail(strict=True)`` marks name a product bug (file and function in the reason): remove the
mark with the fix.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from startserver import StartServer, until, wait_inflight
from test_fault_injection import HealthyLoad

CASE = "direct_basic"
PASSED = 'fnserve_direct_connections_total{event="passed"}'
HANDED_BACK = 'fnserve_direct_connections_total{event="handed_back"}'
LOST = 'fnserve_direct_connections_total{event="lost"}'
VARYING = frozenset({"date", "x-fnserve-request-id"})  # header values that differ between two answers


# ---------------------------------------------------------------------------------------------
# helpers: metrics, a byte-exact HTTP/1.1 client connection


def metrics(url: str) -> dict[str, float]:
    """``url``'s /_fnserve/metrics as ``{'name{labels}': value}``."""
    out: dict[str, float] = {}
    for line in httpx.get(url + "/_fnserve/metrics", timeout=5).text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def served(m: dict[str, float], function: str, status: int = 200) -> float:
    """``fnserve_requests_total`` of ``function`` (its id, e.g. "api/hello.py") with ``status``."""
    return m.get(f'fnserve_requests_total{{function="{function}",status="{status}"}}', 0.0)


def delta(url: str, before: dict[str, float], name: str) -> float:
    return metrics(url).get(name, 0.0) - before.get(name, 0.0)


@dataclass
class Answer:
    """One response as the client got it. ``interim``: the 1xx statuses before it."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    version: bytes = b"HTTP/1.1"
    interim: list[int] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def names(self) -> list[str]:
        """Header names (lower-case, sorted, repeats kept)."""
        return sorted(key for key, _ in self.headers)

    def comparable(self) -> tuple[object, ...]:
        """What must be equal between the direct path and the frames path: status, 1xx, body,
        header names, and the values of the headers other than ``date`` / the request id."""
        values = sorted((k, v) for k, v in self.headers if k not in VARYING)
        return self.version, self.status, self.interim, self.body, self.names(), values

    def error_code(self) -> str:
        return str(json.loads(self.body)["error"]["code"])


class Conn:
    """One client connection to ``url`` on a raw socket: requests written byte-exact, responses
    read as they come (Content-Length, chunked, or until the server closes)."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.buf = b""

    def __enter__(self) -> Conn:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"the server closed the connection; unread: {self.buf[:200]!r}")
        self.buf += chunk

    def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            self._more()
        part, _, self.buf = self.buf.partition(sep)
        return part

    def _exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._more()
        part, self.buf = self.buf[:n], self.buf[n:]
        return part

    def _rest(self) -> bytes:
        with contextlib.suppress(EOFError, ConnectionResetError):
            while True:
                self._more()
        rest, self.buf = self.buf, b""
        return rest

    def _chunked(self) -> bytes:
        body = b""
        while True:
            size = int(self._until(b"\r\n").split(b";")[0], 16)
            if size == 0:
                while self._until(b"\r\n"):  # trailers, then the blank line
                    pass
                return body
            body += self._exact(size)
            assert self._exact(2) == b"\r\n"

    def _head(self) -> tuple[bytes, int, list[tuple[str, str]]]:
        lines = self._until(b"\r\n\r\n").split(b"\r\n")
        version, status = lines[0].split(b" ", 2)[:2]
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.strip().lower().decode("latin-1"), value.strip().decode("latin-1")))
        return version, int(status), headers

    def read(self, method: str = "GET", interim: list[int] | None = None) -> Answer:
        """The next response (``method``: of the request it answers; HEAD has no body)."""
        interim = list(interim or [])
        version, status, headers = self._head()
        while 100 <= status < 200 and status != 101:
            interim.append(status)
            version, status, headers = self._head()
        found = dict(headers)
        if method == "HEAD" or status in (101, 204, 304):
            body = b""
        elif "chunked" in found.get("transfer-encoding", "").lower():
            body = self._chunked()
        elif "content-length" in found:
            body = self._exact(int(found["content-length"]))
        else:
            body = self._rest()
        return Answer(status, headers, body, version, interim)

    def request(self, method: str, target: str, headers: list[tuple[str, str]] | tuple[()] = (), body: bytes = b"",
                *, version: str = "HTTP/1.1", expect: bool = False) -> Answer:
        """Send one request and read its answer. ``Host: example.test`` first; ``Content-Length``
        added for a body unless ``headers`` has a length or a Transfer-Encoding. ``expect``: send
        ``Expect: 100-continue``, wait up to 3 s for the interim answer, then the body."""
        data = request_bytes(method, target, headers, body, version=version, expect=expect)
        if not expect:
            self.send(data)
            return self.read(method)
        head, _, rest = data.partition(b"\r\n\r\n")
        self.send(head + b"\r\n\r\n")
        interim: list[int] = []
        ready, _, _ = select.select([self.sock], [], [], 3.0)
        if ready:
            version_, status, _headers = self._head()
            assert status == 100, status
            interim.append(status)
        self.send(rest)
        return self.read(method, interim)

    def closed(self, timeout: float = 3.0) -> bool:
        """True when the server closes the connection within ``timeout`` s without sending more."""
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return False
        try:
            return self.sock.recv(1) == b"" and not self.buf
        except ConnectionResetError:
            return True


def request_bytes(method: str, target: str, headers: list[tuple[str, str]] | tuple[()] = (), body: bytes = b"",
                  *, version: str = "HTTP/1.1", expect: bool = False) -> bytes:
    """The bytes of one request (``Conn.request``)."""
    lines = [f"{method} {target} {version}", "Host: example.test"]
    lines += [f"{name}: {value}" for name, value in headers]
    names = {name.lower() for name, _ in headers}
    if body and not names & {"content-length", "transfer-encoding"}:
        lines.append(f"Content-Length: {len(body)}")
    if expect:
        lines.append("Expect: 100-continue")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ---------------------------------------------------------------------------------------------
# servers


@dataclass
class Pair:
    """The same project served twice: ``direct`` (the default: direct path on) and ``frames``
    (``--no-direct-path``), for answers that must be equal."""

    direct: StartServer
    frames: StartServer


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """One pair for the tests that leave the servers as they found them."""
    direct = StartServer(CASE, tmp_path_factory.mktemp("direct"))
    frames = StartServer(CASE, tmp_path_factory.mktemp("frames"), "--no-direct-path")
    try:
        direct.start()
        frames.start()
        yield Pair(direct, frames)
    finally:
        direct.stop()
        frames.stop()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[Callable[..., StartServer]]:
    """A server of its own (signals, a changed project): ``fresh(*args, before=callback)``;
    ``before(project_dir)`` runs before the start."""
    servers: list[StartServer] = []

    def make(*args: str, before: Callable[[Path], None] | None = None) -> StartServer:
        srv = StartServer(CASE, tmp_path / f"s{len(servers)}", *args)
        servers.append(srv)
        if before is not None:
            before(srv.project)
        srv.start()
        return srv

    yield make
    for srv in servers:
        srv.stop()


def warm(url: str, *paths: str) -> None:
    """One request to each path on a connection of its own: an instance is ready afterwards (a
    first request on a cold function goes through the frames path: no instance to pass to)."""
    for path in paths:
        r = httpx.get(url + path, timeout=30)
        assert r.status_code == 200, (path, r.status_code, r.text)


# ---------------------------------------------------------------------------------------------
# 1. the three kinds on keep-alive connections: answers, request ids, metrics, access log

KINDS = {"hello": "handler /api/hello?n={i}", "wsgi": "wsgi /api/wsgi?n={i}", "asgi": "asgi /api/asgi?n={i}"}


def test_keep_alive_clients_on_handler_wsgi_asgi_are_served_counted_and_logged(pair: Pair) -> None:
    srv = pair.direct
    warm(srv.url, *(f"/api/{fn}?warm=1" for fn in KINDS))
    before = metrics(srv.url)
    for fn, expected in KINDS.items():
        with httpx.Client(base_url=srv.url, timeout=10) as client:  # one keep-alive connection
            for i in range(50):
                r = client.get(f"/api/{fn}?n={i}", headers={"x-request-id": f"{fn}-{i}"})
                assert (r.status_code, r.text) == (200, expected.format(i=i))
                assert r.headers["x-fnserve-request-id"] == f"{fn}-{i}"
            r = client.get(f"/api/{fn}?n=x")  # no id given: one is made
            assert re.fullmatch(r"[0-9a-f]{16}", r.headers["x-fnserve-request-id"])

    def counted() -> bool:
        m = metrics(srv.url)
        return all(served(m, f"api/{fn}.py") - served(before, f"api/{fn}.py") >= 51 for fn in KINDS)

    until(counted, 5, "the 153 requests in fnserve_requests_total (reports are batched)")
    after = metrics(srv.url)
    for fn in KINDS:
        assert served(after, f"api/{fn}.py") - served(before, f"api/{fn}.py") == 51, fn
    assert after[PASSED] - before.get(PASSED, 0) >= 3, "each client's connection went to an instance"

    def logged(fn: str) -> set[int]:
        rx = re.compile(rf" GET /api/{fn}\?n=(\d+) 200 .*api/{fn}\.py pid=\d+ .*id={fn}-(\d+)\b")
        return {int(m.group(1)) for line in srv.lines if (m := rx.search(line)) and m.group(1) == m.group(2)}

    until(lambda: all(logged(fn) == set(range(50)) for fn in KINDS), 5, "an access line per request")


# ---------------------------------------------------------------------------------------------
# 2. functions see the same input and clients get the same output on both paths


@dataclass(frozen=True)
class Shape:
    """A request shape. ``rid``: send ``X-Request-Id: cmp-<n>`` (else none: one is made up);
    ``direct``: the first request of a connection the front must pass to an instance."""

    name: str
    method: str
    target: str
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    rid: bool = True
    direct: bool = True


SHAPES = [
    Shape("plain", "GET", "/api/users/42"),
    Shape("query", "GET", "/api/users/42?x=1&y=a%20b&id=other&flag&a=1&a=2&e=%E2%82%AC"),
    Shape("encoded path", "GET", "/api/users/caf%C3%A9%20x?q=%2F%3F"),
    Shape("encoded slash", "GET", "/api/users/a%2Fb", direct=False),
    Shape("trailing slash", "GET", "/api/users/42/", direct=False),
    Shape("dot segments", "GET", "/api/users/./42", direct=False),
    Shape("head", "HEAD", "/api/users/7?h=1"),
    Shape("post", "POST", "/api/users/7", (("Content-Type", "application/octet-stream"),), bytes(range(256)) * 8),
    Shape("put empty", "PUT", "/api/users/7", (("Content-Length", "0"),)),
    Shape("delete", "DELETE", "/api/users/8"),
    Shape("headers", "GET", "/api/users/9", (("X-Dup", "one"), ("X-Dup", "two"), ("X-Empty", ""),
                                            ("X-Mixed-Case", " VaLue\t"), ("Cookie", "a=1; b=2"),
                                            ("X-Forwarded-For", "10.1.2.3"), ("User-Agent", "raw/1"))),
    Shape("bad request id", "GET", "/api/users/10", (("X-Request-Id", "bad id with spaces"),), rid=False),
    Shape("no request id", "GET", "/api/users/11", rid=False),
    Shape("catch-all", "GET", "/api/files/a/b/c.txt?z=1"),
    Shape("catch-all encoded", "GET", "/api/files/x%20y/%E2%82%AC?slug=zz&slug=yy"),
    Shape("catch-all post chunked answer", "POST", "/api/files/up?stream=1", (), b"x" * 5000),
    Shape("catch-all head", "HEAD", "/api/files/h"),
    Shape("large body", "POST", "/api/files/large", (("Content-Type", "application/octet-stream"),),
          bytes(range(256)) * 8192),
    Shape("large answer", "GET", "/api/files/big?big=3000000"),
    Shape("catch-all options", "OPTIONS", "/api/files/o", (("Origin", "http://example.test"),)),
]


def _send(conn: Conn, shape: Shape, n: int) -> Answer:
    headers = list(shape.headers)
    if shape.rid:
        headers.append(("X-Request-Id", f"cmp-{n}"))
    return conn.request(shape.method, shape.target, headers, shape.body)


def _echo_check(shape: Shape, answer: Answer) -> None:
    """The function ran and saw the request (not a front error page)."""
    assert answer.status == 200, (shape.name, answer)
    if "big=" in shape.target:
        assert len(answer.body) > 3_000_000 and answer.header("transfer-encoding") == "chunked"
    elif shape.method != "HEAD":
        seen = json.loads(answer.body)
        assert seen["method"] == shape.method, seen


def test_functions_see_the_same_input_on_both_paths_each_shape_on_a_new_connection(pair: Pair) -> None:
    warm(pair.direct.url, "/api/users/0", "/api/files/0")
    warm(pair.frames.url, "/api/users/0", "/api/files/0")
    before = metrics(pair.direct.url)
    for n, shape in enumerate(SHAPES):
        answers = []
        for srv in (pair.direct, pair.frames):
            with Conn(srv.url) as conn:
                answers.append(_send(conn, shape, n))
        direct, frames = answers
        assert direct.comparable() == frames.comparable(), shape.name
        if shape.direct:
            _echo_check(shape, direct)
    passed = delta(pair.direct.url, before, PASSED)
    assert passed >= sum(s.direct for s in SHAPES), passed
    assert metrics(pair.frames.url).get(PASSED, 0) == 0


def test_functions_see_the_same_input_on_both_paths_on_one_keep_alive_connection(pair: Pair) -> None:
    """The same shapes one after the other on one connection: the first is passed, the next
    ``[id]`` ones are parsed by the instance itself, then the catch-all's are handed back."""
    warm(pair.direct.url, "/api/users/0", "/api/files/0")
    warm(pair.frames.url, "/api/users/0", "/api/files/0")
    before = metrics(pair.direct.url)
    shapes = [s for s in SHAPES if s.target.startswith("/api/users/")] + [
        s for s in SHAPES if not s.target.startswith("/api/users/")]
    with Conn(pair.direct.url) as direct, Conn(pair.frames.url) as frames:
        for n, shape in enumerate(shapes):
            a, b = _send(direct, shape, n), _send(frames, shape, n)
            assert a.comparable() == b.comparable(), shape.name
            if shape.direct:
                _echo_check(shape, a)
    assert delta(pair.direct.url, before, PASSED) >= 1
    assert delta(pair.direct.url, before, HANDED_BACK) >= 1  # the catch-all is another function


EDGEONE_SHAPES = [
    Shape("mount root", "GET", "/api/mounted"),
    Shape("mount root slash", "GET", "/api/mounted/"),
    Shape("mount below", "GET", "/api/mounted/a/b?x=1&y=%20"),
    Shape("mount encoded", "GET", "/api/mounted/caf%C3%A9/%2F?q=%E2%82%AC"),
    Shape("mount post", "POST", "/api/mounted/p", (("Content-Type", "application/octet-stream"),), b"z" * 3000),
    Shape("mount head", "HEAD", "/api/mounted/h"),
    Shape("optional catch-all empty", "GET", "/api/items"),
    Shape("optional catch-all one", "GET", "/api/items/a?q=1"),
    Shape("optional catch-all deep", "GET", "/api/items/a/b/c"),
    Shape("raw app", "GET", "/api/scope"),
    Shape("raw app below", "GET", "/api/scope/sub/path?z=1"),
    Shape("raw app encoded", "GET", "/api/scope/x%20y?e=%E2%82%AC"),
]


@pytest.fixture(scope="module")
def edgeone_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """``Pair`` on tests/projects/direct_edgeone (EdgeOne layout: mounted apps, root_path)."""
    direct = StartServer("direct_edgeone", tmp_path_factory.mktemp("edge-direct"))
    frames = StartServer("direct_edgeone", tmp_path_factory.mktemp("edge-frames"), "--no-direct-path")
    try:
        direct.start()
        frames.start()
        yield Pair(direct, frames)
    finally:
        direct.stop()
        frames.stop()


@pytest.mark.parametrize("connection", ["new", "keep-alive"])
def test_edgeone_functions_see_the_same_input_on_both_paths(edgeone_pair: Pair, connection: str) -> None:
    """Mounted framework apps (``SCRIPT_NAME``/``root_path`` from the mount), an optional catch-all
    and a raw ASGI app: each shape on a new connection (passed), or all on one connection."""
    pair = edgeone_pair
    for srv in (pair.direct, pair.frames):
        warm(srv.url, "/api/mounted", "/api/items", "/api/scope")
    before = metrics(pair.direct.url)
    with contextlib.ExitStack() as stack:
        conns = [stack.enter_context(Conn(srv.url)) for srv in (pair.direct, pair.frames)]
        for n, shape in enumerate(EDGEONE_SHAPES):
            if connection == "new":
                conns = [stack.enter_context(Conn(srv.url)) for srv in (pair.direct, pair.frames)]
            direct, frames = (_send(conn, shape, n) for conn in conns)
            assert direct.comparable() == frames.comparable(), shape.name
            assert direct.status == 200, (shape.name, direct)
    assert delta(pair.direct.url, before, PASSED) >= (len(EDGEONE_SHAPES) if connection == "new" else 1)


# ---------------------------------------------------------------------------------------------
# 3. hand-back: another function, a static file, pipelining


def test_one_connection_across_functions_and_a_static_file(pair: Pair) -> None:
    url = pair.direct.url
    warm(url, "/api/hello", "/api/asgi")
    before = metrics(url)
    with Conn(url) as conn:
        assert conn.request("GET", "/api/hello?step=1").body == b"handler /api/hello?step=1"
        assert conn.request("GET", "/api/asgi?step=2").body == b"asgi /api/asgi?step=2"
        static = conn.request("GET", "/file.txt")
        assert (static.status, static.body) == (200, b"a static file\n")
        assert conn.request("GET", "/api/hello?step=4").body == b"handler /api/hello?step=4"
        assert conn.request("GET", "/nothing-here").status == 404
        assert conn.request("GET", "/api/hello?step=6").body == b"handler /api/hello?step=6"
    assert delta(url, before, PASSED) >= 1
    assert delta(url, before, HANDED_BACK) >= 1


def test_a_public_index_html_keeps_only_the_root_on_the_front(fresh: Callable[..., StartServer]) -> None:
    """public/index.html answers ``/``: a passed connection hands back ``/`` and nothing else."""
    srv = fresh(before=lambda project: (project / "public" / "index.html").write_text("<h1>home</h1>\n"))
    warm(srv.url, "/api/hello")
    before = metrics(srv.url)
    with Conn(srv.url) as conn:
        for i in range(5):
            assert conn.request("GET", f"/api/hello?i={i}").body == f"handler /api/hello?i={i}".encode()
        assert delta(srv.url, before, PASSED) == 1
        assert delta(srv.url, before, HANDED_BACK) == 0  # the instance served them all
        assert conn.request("GET", "/").body == b"<h1>home</h1>\n"
        assert conn.request("GET", "/api/hello?i=after").body == b"handler /api/hello?i=after"
    assert delta(srv.url, before, HANDED_BACK) == 1


@pytest.mark.parametrize("first", ["/api/hello?p=0", "/api/users/1?p=0"])
def test_pipelined_requests_in_one_write_are_answered_in_order(pair: Pair, first: str) -> None:
    url = pair.direct.url
    warm(url, "/api/hello", "/api/asgi", "/api/users/0")
    before = metrics(url)
    requests = [("GET", first, b""), ("GET", first.replace("p=0", "p=1"), b""),
                ("POST", "/api/users/5", b"0123456789"), ("GET", "/api/asgi?p=3", b""),
                ("GET", "/file.txt", b""), ("HEAD", "/api/users/6", b""), ("GET", "/api/hello?p=6", b"")]
    data = b"".join(request_bytes(method, target, [("X-Request-Id", f"pipe-{i}")], body)
                    for i, (method, target, body) in enumerate(requests))
    with Conn(url) as conn:
        conn.send(data)
        answers = [conn.read(method) for method, _, _ in requests]
    assert [a.status for a in answers] == [200] * len(requests)
    assert [a.header("x-fnserve-request-id") for a in answers] == [f"pipe-{i}" for i in range(len(requests))]
    bodies = [a.body for a in answers]
    if first.startswith("/api/hello"):
        assert bodies[:2] == [b"handler /api/hello?p=0", b"handler /api/hello?p=1"]
    else:
        assert [json.loads(b)["path"] for b in bodies[:2]] == ["/api/users/1?p=0&id=1", "/api/users/1?p=1&id=1"]
    assert json.loads(bodies[2])["body_length"] == 10 and json.loads(bodies[2])["method"] == "POST"
    assert bodies[3:5] == [b"asgi /api/asgi?p=3", b"a static file\n"]
    assert bodies[5] == b"" and answers[5].header("x-echo") == "users"
    assert bodies[6] == b"handler /api/hello?p=6"
    assert delta(url, before, PASSED) >= 1
    assert delta(url, before, HANDED_BACK) >= 1


def test_a_first_head_in_pieces_and_a_body_in_pieces_are_served_as_on_the_frames_path(pair: Pair) -> None:
    """The front holds a first head back until it is complete; the body's bytes that come after
    the pass are read by the instance."""
    warm(pair.direct.url, "/api/users/0", "/api/files/0")
    warm(pair.frames.url, "/api/users/0", "/api/files/0")
    before = metrics(pair.direct.url)
    body = bytes(range(256)) * 40
    data = request_bytes("POST", "/api/files/pieces?x=1", [("X-Request-Id", "pieces")], body)
    cuts = [0, 7, 30, len(data) - len(body) - 1, len(data) - len(body) + 100, len(data) - 10, len(data)]
    answers = []
    for srv in (pair.direct, pair.frames):
        with Conn(srv.url) as conn:
            for start, end in zip(cuts, cuts[1:]):
                conn.send(data[start:end])
                time.sleep(0.15)
            answers.append(conn.read())
            answers.append(conn.request("GET", "/api/files/after", [("X-Request-Id", "after")]))
    direct, direct_after, frames, frames_after = answers
    assert direct.status == 200 and json.loads(direct.body)["body_length"] == len(body)
    assert direct.comparable() == frames.comparable()
    assert direct_after.comparable() == frames_after.comparable()
    assert delta(pair.direct.url, before, PASSED) >= 1


@pytest.mark.parametrize("switch", [None, 700])
def test_a_thousand_pipelined_requests_are_answered_in_order(pair: Pair, switch: int | None) -> None:
    """More than the instance reads at once (it pauses reading while 64 KiB wait); ``switch``: that
    request goes to another function, so the connection is handed back with what is left unread."""
    url = pair.direct.url
    warm(url, "/api/hello", "/api/asgi")
    before = metrics(url)
    paths = [f"/api/{'asgi' if i == switch else 'hello'}?pipelined=request-number-{i}" for i in range(1000)]
    data = b"".join(request_bytes("GET", path, [("X-Request-Id", f"p{i}")]) for i, path in enumerate(paths))
    with Conn(url) as conn:
        assert conn.request("GET", "/api/hello?first").status == 200  # passed (a first read over 60 KiB is not)
        sender = threading.Thread(target=conn.send, args=(data,))
        sender.start()
        answers = [conn.read() for _ in paths]
        sender.join(10)
    expected = [(200, f"{'asgi' if i == switch else 'handler'} {path}".encode(), f"p{i}")
                for i, path in enumerate(paths)]
    assert [(a.status, a.body, a.header("x-fnserve-request-id")) for a in answers] == expected
    assert delta(url, before, PASSED) == 1
    assert delta(url, before, HANDED_BACK) == (1 if switch else 0)


def test_many_keep_alive_clients_across_functions_at_once(pair: Pair) -> None:
    """40 clients (more than a handler instance's 32 requests at once), each a keep-alive connection
    going from function to function: every answer right."""
    url = pair.direct.url
    warm(url, "/api/hello", "/api/wsgi", "/api/asgi", "/api/users/0")
    before = metrics(url)
    problems: list[str] = []

    def client(n: int) -> None:
        order = ["hello", "hello", "wsgi", "asgi", "hello"] if n % 2 else ["asgi", "asgi", "hello", "users/7"]
        try:
            with httpx.Client(base_url=url, timeout=15) as http:
                for round_ in range(5):
                    for fn in order:
                        r = http.get(f"/api/{fn}?c={n}&r={round_}")
                        if fn == "users/7":
                            ok = r.json()["path"] == f"/api/users/7?c={n}&r={round_}&id=7"
                        else:
                            kind = "handler" if fn == "hello" else fn
                            ok = r.text == f"{kind} /api/{fn}?c={n}&r={round_}"
                        if r.status_code != 200 or not ok:
                            problems.append(f"{n} {fn} {r.status_code} {r.text[:100]}")
        except httpx.HTTPError as exc:
            problems.append(f"{n} {exc!r}")

    threads = [threading.Thread(target=client, args=(n,)) for n in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not problems, problems[:5]
    assert delta(url, before, PASSED) >= 20
    assert delta(url, before, HANDED_BACK) >= 20


SLOW_BODY_BUG: tuple[()] = ()  # fixed: the worker pre-reads the body as the front does


@pytest.mark.parametrize("args", [pytest.param((), marks=SLOW_BODY_BUG), ("--no-direct-path",)],
                         ids=["direct", "frames"])
@pytest.mark.parametrize("position", ["first", "after a passed request"])
def test_a_trickled_body_is_read_before_the_function_runs(fresh: Callable[..., StartServer], args: tuple[str, ...],
                                                          position: str) -> None:
    """docs/SECURITY.md: the first 1 MiB of a body is read before a function slot is taken (as
    tests/server/test_frontdoor_e2e.py checks for the front): the function never waits for it."""
    srv = fresh(*args)
    warm(srv.url, "/api/bodytime")
    before = metrics(srv.url)
    with Conn(srv.url) as conn:
        if position != "first":
            assert conn.request("POST", "/api/bodytime", (), b"x").body == b"read 1"
        conn.send(b"POST /api/bodytime HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nab")
        for part in (b"cd", b"ef"):
            time.sleep(0.5)
            conn.send(part)
        answer = conn.read()
    assert (answer.status, answer.body) == (200, b"read 6"), answer
    assert delta(srv.url, before, PASSED) == (0 if args else 1)
    assert int(answer.header("x-read-ms") or 0) < 300, answer


# ---------------------------------------------------------------------------------------------
# 4. unusual requests: answered as the frames path answers them, first or later on a connection


UNUSUAL = {
    "chunked body": ("POST", "/api/files/c", [("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n3\r\n!!!\r\n0\r\n\r\n"),
    "chunked body to a handler": ("POST", "/api/users/3", [("Transfer-Encoding", "chunked")], b"5\r\nhello\r\n0\r\n\r\n"),
    "expect 100-continue": ("POST", "/api/files/e", [], b"0123456789"),
    "http/1.0": ("GET", "/api/users/10?old=1", [], b""),
    "http/1.0 keep-alive": ("GET", "/api/users/11", [("Connection", "keep-alive")], b""),
    "connection close": ("GET", "/api/users/12", [("Connection", "close")], b""),
    "websocket upgrade": ("GET", "/api/files/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                                   ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                                   ("Sec-WebSocket-Version", "13")], b""),
    "body over the limit": ("POST", "/api/files/big", [("Content-Length", "5000000")], b""),  # 413, head only sent
    "too many headers": ("GET", "/api/files/h", [(f"X-N{i}", "v") for i in range(101)], b""),  # 431
    "head too large": ("GET", "/api/files/h", [("X-Big", "v" * 70000)], b""),  # 431
    "two content-lengths": ("POST", "/api/files/h", [("Content-Length", "3"), ("Content-Length", "3")], b"abc"),
    "obs-fold": ("GET", "/api/files/h", [("X-Fold", "a\r\n b")], b""),  # 400
    "absolute-form target": ("GET", "http://example.test/api/files/abs", [], b""),
    "lower-case method": ("get", "/api/files/m", [], b""),  # 400 from the front's parser
    "custom method": ("PURGE", "/api/files/m", [], b""),
    "unknown method": ("FOO", "/api/files/m", [], b""),  # 400: the front's parser knows a fixed list
    "space in a header name": ("GET", "/api/files/h", [("X-A b", "1")], b""),
    "utf-8 in a header value": ("GET", "/api/files/h", [("X-U", "caf\xc3\xa9")], b""),
    "raw utf-8 in the path": ("GET", "/api/files/caf\xc3\xa9", [], b""),
    "fragment": ("GET", "/api/files/f#frag", [], b""),
    "empty query": ("GET", "/api/users/42?", [], b""),
    "double slash": ("GET", "/api//users/42", [], b""),
    "dot-dot segment": ("GET", "/api/files/../users/42", [], b""),
    "two request ids": ("GET", "/api/files/ids", [("X-Request-Id", "one"), ("X-Request-Id", "two")], b""),
    "connection keep-alive, close": ("GET", "/api/files/kc", [("Connection", "keep-alive, close")], b""),
    "connection upgrade, no upgrade": ("GET", "/api/files/cu", [("Connection", "Upgrade")], b""),
    "length 0 on a GET": ("GET", "/api/files/l0", [("Content-Length", "0")], b""),
}
CLOSES = {"http/1.0", "connection close", "too many headers", "head too large", "two content-lengths", "obs-fold",
          "lower-case method", "unknown method", "space in a header name",
          "raw utf-8 in the path", "connection keep-alive, close"}  # the server closes the connection after these (both paths)


def _unusual(conn: Conn, name: str) -> tuple[Answer, bool]:
    method, target, headers, body = UNUSUAL[name]
    version = "HTTP/1.0" if name.startswith("http/1.0") else "HTTP/1.1"
    answer = conn.request(method, target, headers, body, version=version, expect=name.startswith("expect"))
    return answer, conn.closed(1.0) if name in CLOSES else False


# product bug (report of the e2e tests, 2026-12-04): a method token the front's parser (llhttp) does not know
# ("get", "FOO") gets its 400 on the frames path but is served on the direct path: server/direct.py
# DirectRouter.try_pass passes it (first request), runtime/h1conn.py _REQUEST_LINE takes any token (later ones)
METHODS_BUG: tuple[()] = ()  # fixed: both sides take only the methods the front's parser takes


@pytest.mark.parametrize("name", [pytest.param(n, marks=METHODS_BUG) if n.endswith(" method") and n != "custom method"
                                  else n for n in UNUSUAL])
@pytest.mark.parametrize("position", ["first", "after a passed request"])
def test_unusual_requests_are_answered_as_on_the_frames_path(pair: Pair, name: str, position: str) -> None:
    opening = "/api/files/open" if UNUSUAL[name][1].startswith("/api/files/") else "/api/users/1"
    warm(pair.direct.url, opening)
    warm(pair.frames.url, opening)
    before = metrics(pair.direct.url)
    results = []
    for srv in (pair.direct, pair.frames):
        with Conn(srv.url) as conn:
            if position != "first":
                assert conn.request("GET", opening, [("X-Request-Id", "opening")]).status == 200
            results.append(_unusual(conn, name))
    (direct, direct_closed), (frames, frames_closed) = results
    assert direct.comparable() == frames.comparable()
    assert direct_closed == frames_closed
    if position != "first":
        assert delta(pair.direct.url, before, PASSED) >= 1


def test_an_idle_passed_connection_is_closed_after_the_keep_alive_timeout(pair: Pair) -> None:
    """As the front does (``frontdoor.KEEP_ALIVE``, 5 s): silently, no answer written."""
    warm(pair.direct.url, "/api/users/0")
    warm(pair.frames.url, "/api/users/0")
    before = metrics(pair.direct.url)
    with Conn(pair.direct.url) as direct, Conn(pair.frames.url) as frames:
        assert direct.request("GET", "/api/users/1").status == 200
        assert frames.request("GET", "/api/users/1").status == 200
        t0 = time.monotonic()
        assert not direct.closed(3.5) and not frames.closed(0.1)  # open well before the timeout
        assert direct.closed(4.0) and frames.closed(1.0)
        assert 4.0 < time.monotonic() - t0 < 8.0
    assert delta(pair.direct.url, before, PASSED) >= 1


def test_a_passed_connection_holds_one_lease_until_it_closes(fresh: Callable[..., StartServer]) -> None:
    """docs: one passed connection = one lease: with 2 requests at once per instance and one
    instance, 2 connections are passed; once they close, 2 new ones are passed again."""
    srv = fresh("--concurrency-sync", "2", "--max-instances", "1")
    warm(srv.url, "/api/hello")
    before = metrics(srv.url)
    first = [Conn(srv.url) for _ in range(2)]
    for i, conn in enumerate(first):
        assert conn.request("GET", f"/api/hello?c={i}").body == f"handler /api/hello?c={i}".encode()
    assert delta(srv.url, before, PASSED) == 2
    for conn in first:
        conn.close()
    time.sleep(0.3)  # the instance sees the clients leave and says so (X packets): leases released
    with Conn(srv.url) as a, Conn(srv.url) as b:
        assert a.request("GET", "/api/hello?c=a").status == b.request("GET", "/api/hello?c=b").status == 200
    assert delta(srv.url, before, PASSED) == 4


def test_idle_passed_connections_do_not_make_another_client_wait(fresh: Callable[..., StartServer]) -> None:
    """With --no-direct-path, a third client of an instance taking 2 requests at once is answered
    at once while 2 idle keep-alive connections are open; so must it be with the direct path."""
    srv = fresh("--concurrency-sync", "2", "--max-instances", "1")
    warm(srv.url, "/api/hello")
    with Conn(srv.url) as a, Conn(srv.url) as b, Conn(srv.url) as c:
        assert a.request("GET", "/api/hello?c=a").status == b.request("GET", "/api/hello?c=b").status == 200
        t0 = time.monotonic()
        assert c.request("GET", "/api/hello?c=c").body == b"handler /api/hello?c=c"
        assert time.monotonic() - t0 < 1.0


def test_idle_passed_connections_do_not_start_another_instance(fresh: Callable[..., StartServer]) -> None:
    """A request queued behind idle passed connections gets one of their slots (reclaimed): the
    autoscaler does not count them as demand, so no second instance is cold-started for it."""
    srv = fresh("--concurrency-sync", "2", "--max-instances", "2")
    warm(srv.url, "/api/hello")
    before = metrics(srv.url)
    cold = 'fnserve_cold_starts_total{function="api/hello.py"}'
    with Conn(srv.url) as a, Conn(srv.url) as b, Conn(srv.url) as c:
        assert a.request("GET", "/api/hello?c=a").status == b.request("GET", "/api/hello?c=b").status == 200
        until(lambda: delta(srv.url, before, PASSED) == 2, 5, "both connections to be passed")
        assert c.request("GET", "/api/hello?c=c").body == b"handler /api/hello?c=c"
        assert delta(srv.url, before, HANDED_BACK) == 1
        time.sleep(0.5)  # a scaling step it would have taken has had its time
        assert delta(srv.url, before, cold) == 0
        for conn, name in ((a, "a"), (b, "b"), (c, "c")):
            assert conn.request("GET", f"/api/hello?again={name}").status == 200


def test_each_queued_request_reclaims_one_idle_connection_and_a_busy_one_once_it_ends(
        fresh: Callable[..., StartServer]) -> None:
    """docs: the direct path's reclaim, async function, 3 requests at once, 3 passed connections (2
    idle, 1 busy): each request queued on the front gets one idle connection's slot (one each, not
    more); a third waits for the busy one's request to end and gets its slot then (it is asked
    again), not after keep-alive's 5 s nor after the queued requests (4 s). The connections
    handed back go on working, served by the front."""
    srv = fresh("--concurrency-asgi", "3", "--max-instances", "1")
    warm(srv.url, "/api/asgi")
    before = metrics(srv.url)
    idle = [Conn(srv.url) for _ in range(2)]
    busy, late = Conn(srv.url), Conn(srv.url)
    queued = [Conn(srv.url) for _ in range(2)]
    try:
        for i, conn in enumerate(idle):
            assert conn.request("GET", f"/api/asgi?idle={i}").status == 200
        busy.send(request_bytes("GET", "/api/asgi?sleep=1.5"))
        until(lambda: delta(srv.url, before, PASSED) == 3, 5, "the 3 connections to be passed")
        wait_inflight(srv.url, "api/asgi.py", 1)
        for i, conn in enumerate(queued):  # each holds its slot for 4 s
            conn.send(request_bytes("GET", f"/api/asgi?sleep=4&q={i}"))
            until(lambda n=i + 1: delta(srv.url, before, HANDED_BACK) == n, 2, "an idle connection to come back")
            time.sleep(0.3)
            assert delta(srv.url, before, HANDED_BACK) == i + 1  # one per queued request
        t0 = time.monotonic()
        answer = late.request("GET", "/api/asgi?late=1")
        took = time.monotonic() - t0
        assert answer.body == b"asgi /api/asgi?late=1" and took < 3.0, (answer, took)
        assert busy.read().body == b"asgi /api/asgi?sleep=1.5"
        assert delta(srv.url, before, HANDED_BACK) == 3
        for i, conn in enumerate(queued):
            assert conn.read().body == f"asgi /api/asgi?sleep=4&q={i}".encode()
        for i, conn in enumerate([*idle, busy]):  # back with the front: they still work
            assert conn.request("GET", f"/api/asgi?again={i}").body == f"asgi /api/asgi?again={i}".encode()
        assert delta(srv.url, before, PASSED) == 3  # a handed-back connection is never passed again
    finally:
        for conn in [*idle, busy, late, *queued]:
            conn.close()


# ---------------------------------------------------------------------------------------------
# 5. maxDuration


@pytest.mark.parametrize("function", ["slow", "slow_sync"])
def test_a_direct_request_past_max_duration_gets_504_and_the_next_one_200(pair: Pair, function: str) -> None:
    url = pair.direct.url
    ok = b"slow ok" if function == "slow" else b"slow sync ok"
    warm(url, f"/api/{function}?sleep=0")
    warm(pair.frames.url, f"/api/{function}?sleep=0")
    before = metrics(url)
    with Conn(url) as conn:
        t0 = time.monotonic()
        answer = conn.request("GET", f"/api/{function}?sleep=3", [("X-Request-Id", "too-slow")])
        took = time.monotonic() - t0
    assert answer.status == 504 and answer.error_code() == "FUNCTION_INVOCATION_TIMEOUT", answer
    assert took < 2.5, took
    assert delta(url, before, PASSED) >= 1
    with Conn(pair.frames.url) as conn:
        reference = conn.request("GET", f"/api/{function}?sleep=3", [("X-Request-Id", "too-slow")])
    # the same answer, but the instance closes the connection (docs: the direct path's maxDuration)
    assert (answer.status, answer.body) == (reference.status, reference.body)
    assert [n for n in answer.names() if n != "connection"] == [n for n in reference.names() if n != "connection"]
    r = httpx.get(f"{url}/api/{function}?sleep=0", timeout=15)
    assert (r.status_code, r.content) == (200, ok)


def test_a_direct_504_past_max_duration_is_counted_and_logged(pair: Pair) -> None:
    url = pair.direct.url
    warm(url, "/api/slow?sleep=0")
    before = metrics(url)
    with Conn(url) as conn:
        assert conn.request("GET", "/api/slow?sleep=3&counted=1", [("X-Request-Id", "counted-504")]).status == 504
    assert delta(url, before, PASSED) >= 1
    until(lambda: served(metrics(url), "api/slow.py", 504) - served(before, "api/slow.py", 504) >= 1,
          3, "the 504 in fnserve_requests_total")
    pair.direct.wait_for_line(r" GET /api/slow\?sleep=3&counted=1 504 .*api/slow\.py .*id=counted-504", timeout=1)


def test_a_wedged_instance_past_max_duration_gets_the_fronts_504(pair: Pair) -> None:
    """An async app blocking its event loop cannot answer its own 504: the front's sweep kills the
    instance past ``maxDuration + 1 s`` and answers 504 on its copy of the connection (design (e))."""
    url = pair.direct.url
    warm(url, "/api/wedge")
    before = metrics(url)
    with Conn(url) as conn:
        t0 = time.monotonic()
        answer = conn.request("GET", "/api/wedge?block=4", [("X-Request-Id", "wedged")])
        took = time.monotonic() - t0
    assert answer.status == 504 and answer.error_code() == "FUNCTION_INVOCATION_TIMEOUT", answer
    assert took < 3.5, took
    assert delta(url, before, PASSED) >= 1
    assert delta(url, before, LOST) >= 1
    r = httpx.get(url + "/api/wedge", timeout=15)
    assert (r.status_code, r.text) == (200, "wedge ok")


# ---------------------------------------------------------------------------------------------
# 6. an instance that dies mid-request


def test_an_instance_dying_mid_request_answers_502_and_spares_other_connections(pair: Pair) -> None:
    url = pair.direct.url
    warm(url, "/api/healthy", "/api/crash?ok=1", "/api/hello")
    warm(pair.frames.url, "/api/crash?ok=1")
    before = metrics(url)
    with HealthyLoad(url, clients=2, seconds=15) as load, Conn(url) as other:
        assert other.request("GET", "/api/hello?before=1").body == b"handler /api/hello?before=1"
        with Conn(url) as conn:
            answer = conn.request("GET", "/api/crash", [("X-Request-Id", "crash-1")])
        time.sleep(0.3)
        assert other.request("GET", "/api/hello?after=1").body == b"handler /api/hello?after=1"  # same connection
    assert answer.status == 502, answer
    assert not load.failures, load.failures[:3]
    assert load.sent > 2
    assert delta(url, before, PASSED) >= 2
    assert delta(url, before, LOST) >= 1
    with Conn(pair.frames.url) as conn:
        reference = conn.request("GET", "/api/crash", [("X-Request-Id", "crash-1")])
    assert reference.status == 502
    # the front's answer on its copy of the socket: FrontApp's code and message, and the request id the
    # worker gave the request (read back from the slot table: tests/server/test_direct_lost.py)
    assert answer.error_code() == reference.error_code()
    assert answer.header("x-fnserve-request-id") == reference.header("x-fnserve-request-id") == "crash-1"
    # the front learns the exit status before it answers here: "... died while serving the request (exit status 1)"
    assert json.loads(answer.body)["error"]["message"].startswith(json.loads(reference.body)["error"]["message"])
    assert answer.header("content-type") == reference.header("content-type") == "application/json"
    r = httpx.get(url + "/api/crash?ok=1", timeout=15)
    assert (r.status_code, r.text) == (200, "crash ok")


def test_an_instance_killed_for_memory_answers_as_on_the_frames_path(pair: Pair) -> None:
    warm(pair.direct.url, "/api/hog?ok=1")
    warm(pair.frames.url, "/api/hog?ok=1")
    before = metrics(pair.direct.url)
    answers = []
    for srv in (pair.direct, pair.frames):
        with Conn(srv.url) as conn:
            answers.append(conn.request("GET", "/api/hog", [("X-Request-Id", "hog")]))
    direct, frames = answers
    assert frames.status == 502 and "memory limit of 128 MB" in json.loads(frames.body)["error"]["message"], frames
    assert direct.status == 502, direct
    assert direct.error_code() == frames.error_code()
    assert json.loads(direct.body)["error"]["message"] == json.loads(frames.body)["error"]["message"]
    assert delta(pair.direct.url, before, PASSED) >= 1 and delta(pair.direct.url, before, LOST) >= 1
    r = httpx.get(pair.direct.url + "/api/hog?ok=1", timeout=15)
    assert (r.status_code, r.text) == (200, "hog ok")


def test_a_connection_passed_to_an_instance_out_of_descriptors_is_still_answered(
        fresh: Callable[..., StartServer]) -> None:
    """An instance that leaked every descriptor it may open cannot take a passed connection: the
    client must get an answer (the front's, or a failed request's 500), not wait forever."""
    srv = fresh("--max-failures", "0")
    warm(srv.url, "/api/fdleak?ok=1")
    with Conn(srv.url) as leaking:
        assert leaking.request("GET", "/api/fdleak").status == 500  # EMFILE: the app raised; the connection stays
        before = metrics(srv.url)
        with Conn(srv.url, timeout=5) as conn:
            answer = conn.request("GET", "/api/fdleak?ok=1")  # passed to the same instance, which has no fd left
    assert answer.status in (500, 502, 503), answer
    assert delta(srv.url, before, PASSED) == 1


def test_an_instance_dying_mid_response_cuts_the_answer_as_on_the_frames_path(pair: Pair) -> None:
    warm(pair.direct.url, "/api/cut?ok=1")
    warm(pair.frames.url, "/api/cut?ok=1")
    before = metrics(pair.direct.url)
    for srv in (pair.direct, pair.frames):
        with Conn(srv.url) as conn:
            conn.send(request_bytes("GET", "/api/cut"))
            _version, status, headers = conn._head()
            assert status == 200 and ("content-length", "100") in headers
            with pytest.raises((EOFError, ConnectionResetError)):
                conn._exact(100)  # 10 bytes, then the connection ends
            assert conn.buf == b"x" * 10, srv.args
    assert delta(pair.direct.url, before, PASSED) >= 1
    r = httpx.get(pair.direct.url + "/api/cut?ok=1", timeout=15)
    assert (r.status_code, len(r.content)) == (200, 100)


def test_max_requests_recycles_an_instance_serving_a_passed_connection(fresh: Callable[..., StartServer]) -> None:
    """--max-requests 5: the requests served on a passed connection count; the instance is
    replaced and the connection goes on (handed back, then passed to no one: the front serves it)."""
    srv = fresh("--max-requests", "5")
    warm(srv.url, "/api/healthy")
    before = metrics(srv.url)
    pids = []
    with Conn(srv.url) as conn:
        for i in range(20):
            answer = conn.request("GET", f"/api/healthy?i={i}")
            assert answer.status == 200 and answer.body.startswith(b"healthy "), (i, answer)
            pids.append(int(answer.body.split()[1]))
            time.sleep(0.05)
    assert len(set(pids)) >= 2, pids
    assert delta(srv.url, before, PASSED) >= 1


# ---------------------------------------------------------------------------------------------
# 7-8. signals


def test_sigterm_lets_five_direct_requests_finish_and_exits_0(fresh: Callable[..., StartServer]) -> None:
    srv = fresh()
    warm(srv.url, "/api/asgi")
    before = metrics(srv.url)
    conns = [Conn(srv.url) for _ in range(5)]
    answers: list[Answer | BaseException] = [RuntimeError("no answer")] * 5

    def ask(i: int) -> None:
        try:
            answers[i] = conns[i].request("GET", f"/api/asgi?sleep=1&i={i}")
        except BaseException as exc:  # reported by the assert below
            answers[i] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(5)]
    try:
        for t in threads:
            t.start()
        until(lambda: delta(srv.url, before, PASSED) == 5, 5, "the 5 connections to be passed")
        time.sleep(0.3)  # inside the app now (it sleeps 1 s)
        srv.signal(signal.SIGTERM)
        for t in threads:
            t.join(15)
    finally:
        for conn in conns:
            conn.close()
    for i, answer in enumerate(answers):
        assert isinstance(answer, Answer) and answer.status == 200, answer
        assert answer.body == f"asgi /api/asgi?sleep=1&i={i}".encode()
    assert srv.wait(15) == 0
    srv.wait_for_line(r"fnserve start: stopped")


@pytest.mark.parametrize("args", [(), ("--no-direct-path",)], ids=["direct", "frames"])
def test_sigterm_closes_idle_passed_connections_at_once(fresh: Callable[..., StartServer], args: tuple[str, ...]) -> None:
    srv = fresh(*args)
    warm(srv.url, "/api/hello", "/api/asgi")
    before = metrics(srv.url)
    conns = [Conn(srv.url) for _ in range(3)]
    try:
        for i, conn in enumerate(conns):
            assert conn.request("GET", f"/api/{'asgi' if i else 'hello'}?idle={i}").status == 200
        assert delta(srv.url, before, PASSED) == (0 if args else 3)
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        assert all(conn.closed(3.0) for conn in conns)  # closed without an answer, well before keep-alive's 5 s
        assert srv.wait(5) == 0
        assert time.monotonic() - t0 < 3.0
    finally:
        for conn in conns:
            conn.close()


@pytest.mark.parametrize("args", [(), ("--no-direct-path",)], ids=["direct", "frames"])
def test_sigint_past_the_grace_period_answers_503_on_a_passed_connection(
        fresh: Callable[..., StartServer], args: tuple[str, ...]) -> None:
    """tests/server/test_start_signals.py's cut-off request, on a passed connection: the same 503."""
    srv = fresh("--grace-period", "1", *args)
    warm(srv.url, "/api/asgi")
    before = metrics(srv.url)
    with Conn(srv.url) as conn:
        conn.send(request_bytes("GET", "/api/asgi?sleep=20", [("X-Request-Id", "cut-off")]))
        wait_inflight(srv.url, "api/asgi.py", 1)
        assert delta(srv.url, before, PASSED) == (0 if args else 1)
        t0 = time.monotonic()
        srv.signal(signal.SIGINT)
        answer = conn.read()
    assert srv.wait(15) == 0
    assert time.monotonic() - t0 < 8
    assert answer.status == 503 and answer.header("retry-after") == "1", answer
    assert answer.header("connection") == "close" and answer.header("x-fnserve-request-id") == "cut-off"
    assert json.loads(answer.body) == {"error": {  # server.observe's answer
        "code": "SHUTTING_DOWN", "message": "the server stopped before this request finished (its grace period "
                                            "was over); retry it"}}


def test_the_inflight_gauge_counts_direct_requests(pair: Pair) -> None:
    """docs: the direct path's slot table: ``fnserve_function_inflight`` counts requests in progress
    on passed connections as it counts frames streams."""
    url = pair.direct.url
    warm(url, "/api/asgi")
    before = metrics(url)
    conns = [Conn(url) for _ in range(3)]
    try:
        for i, conn in enumerate(conns):
            conn.send(request_bytes("GET", f"/api/asgi?sleep=1.5&g={i}"))
        wait_inflight(url, "api/asgi.py", 3, timeout=1.2)
        assert delta(url, before, PASSED) == 3
        assert [conn.read().status for conn in conns] == [200] * 3
        wait_inflight(url, "api/asgi.py", 0, timeout=2)
    finally:
        for conn in conns:
            conn.close()


def test_sighup_gives_a_passed_keep_alive_connection_the_new_version(fresh: Callable[..., StartServer]) -> None:
    srv = fresh()
    warm(srv.url, "/api/version")
    before = metrics(srv.url)
    with Conn(srv.url) as conn:
        assert conn.request("GET", "/api/version").body == b"v1"
        assert conn.request("GET", "/api/version").body == b"v1"
        assert delta(srv.url, before, PASSED) == 1
        version = srv.project / "api" / "version.py"
        version.write_text(version.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
        mark = len(srv.lines)
        srv.signal(signal.SIGHUP)
        srv.wait_for_line(r"reload: done", timeout=15, start=mark)
        until(lambda: delta(srv.url, before, HANDED_BACK) >= 1, 5, "the old instance to hand its connection back")
        answer = conn.request("GET", "/api/version")  # the same connection
        assert (answer.status, answer.body) == (200, b"v2")
        assert conn.request("GET", "/api/version").body == b"v2"


def test_sighup_lets_a_busy_passed_connection_finish_then_serves_the_new_version(
        fresh: Callable[..., StartServer]) -> None:
    """A request in progress on a passed connection at the reload finishes on the old instance;
    the connection's next request gets the new code (handed back after that response)."""
    srv = fresh()
    warm(srv.url, "/api/version")
    before = metrics(srv.url)
    with Conn(srv.url) as conn:
        assert conn.request("GET", "/api/version").body == b"v1"
        conn.send(request_bytes("GET", "/api/version?sleep=1.5"))
        time.sleep(0.3)
        version = srv.project / "api" / "version.py"
        version.write_text(version.read_text().replace('VERSION = "v1"', 'VERSION = "v2"'))
        mark = len(srv.lines)
        srv.signal(signal.SIGHUP)
        answer = conn.read()
        assert (answer.status, answer.body) == (200, b"v1")  # the old code was running it
        srv.wait_for_line(r"reload: done", timeout=15, start=mark)
        until(lambda: delta(srv.url, before, HANDED_BACK) >= 1, 5, "the old instance to hand the connection back")
        assert conn.request("GET", "/api/version").body == b"v2"  # the same connection
    assert delta(srv.url, before, PASSED) == 1


def test_sighup_adding_a_redirect_applies_it_on_a_passed_connection(fresh: Callable[..., StartServer]) -> None:
    """A vercel.json rule turns the direct path off (module docstring); a connection an instance
    held before the reload must follow the new rules from its next request."""
    srv = fresh()
    warm(srv.url, "/api/hello")
    before = metrics(srv.url)
    with Conn(srv.url) as conn:
        assert conn.request("GET", "/api/hello?before").body == b"handler /api/hello?before"
        assert delta(srv.url, before, PASSED) == 1
        config = json.loads((srv.project / "vercel.json").read_text())
        config["redirects"] = [{"source": "/api/hello", "destination": "/api/wsgi", "permanent": False}]
        (srv.project / "vercel.json").write_text(json.dumps(config))
        mark = len(srv.lines)
        srv.signal(signal.SIGHUP)
        srv.wait_for_line(r"reload: done", timeout=15, start=mark)
        time.sleep(0.5)
        with Conn(srv.url) as other:
            assert other.request("GET", "/api/hello").status == 307  # a new connection: the front applies it
        answer = conn.request("GET", "/api/hello?after")  # the connection passed before the reload
        assert (answer.status, answer.header("location")) == (307, "/api/wsgi?after"), answer


def test_sighup_adding_a_static_file_over_a_route_serves_it_on_a_passed_connection(
        fresh: Callable[..., StartServer]) -> None:
    """Static files come before functions: after a reload that adds public/api/users/special, a
    connection an instance held before gets the file for that path (the instance has the new
    plan, or was replaced)."""
    srv = fresh()
    warm(srv.url, "/api/users/0")
    before = metrics(srv.url)
    with Conn(srv.url) as conn:
        assert json.loads(conn.request("GET", "/api/users/special").body)["path"] == "/api/users/special?id=special"
        assert delta(srv.url, before, PASSED) == 1
        (srv.project / "public" / "api" / "users").mkdir(parents=True)
        (srv.project / "public" / "api" / "users" / "special").write_text("a static special\n")
        mark = len(srv.lines)
        srv.signal(signal.SIGHUP)
        srv.wait_for_line(r"reload: done", timeout=15, start=mark)
        time.sleep(0.5)
        with Conn(srv.url) as other:
            assert other.request("GET", "/api/users/special").body == b"a static special\n"
        answer = conn.request("GET", "/api/users/special")
        assert (answer.status, answer.body) == (200, b"a static special\n"), answer
        assert json.loads(conn.request("GET", "/api/users/7").body)["path"] == "/api/users/7?id=7"


# ---------------------------------------------------------------------------------------------
# 9-10. --no-direct-path; vercel.json rules


def test_no_direct_path_passes_nothing_and_answers_the_same(pair: Pair) -> None:
    paths = ["/api/hello?x=1", "/api/wsgi?x=2", "/api/asgi?x=3", "/api/users/5?x=4", "/file.txt", "/nothing"]
    warm(pair.frames.url, "/api/hello", "/api/wsgi", "/api/asgi", "/api/users/0")
    warm(pair.direct.url, "/api/hello", "/api/wsgi", "/api/asgi", "/api/users/0")
    before = metrics(pair.frames.url)
    for path in paths:  # each first on a connection of its own, then all on one
        with Conn(pair.direct.url) as a, Conn(pair.frames.url) as b:
            headers = [("X-Request-Id", "same")]
            assert a.request("GET", path, headers).comparable() == b.request("GET", path, headers).comparable(), path
    host = {"host": "example.test"}
    with httpx.Client(base_url=pair.frames.url, headers=host, timeout=10) as frames, \
            httpx.Client(base_url=pair.direct.url, headers=host, timeout=10) as direct:
        for path in paths * 3:
            x, y = frames.get(path), direct.get(path)
            assert (x.status_code, x.content) == (y.status_code, y.content), path
    after = metrics(pair.frames.url)
    assert after.get(PASSED) == 0 and after.get(HANDED_BACK) == 0 and after.get(LOST) == 0
    assert served(after, "api/hello.py") - served(before, "api/hello.py") == 4


RULES = {
    "redirects": [{"source": "/old-hello", "destination": "/api/hello"},
                  {"source": "/api/wsgi", "destination": "/api/asgi", "permanent": False}],
    "rewrites": [{"source": "/alias/:rest*", "destination": "/api/files/:rest*"}],
    "headers": [{"source": "/api/asgi", "headers": [{"key": "X-From-Rule", "value": "yes"}]}],
}
RULE_REQUESTS = ["/api/hello?r=1", "/old-hello", "/api/wsgi?q=1", "/api/asgi?h=1", "/alias/a/b?z=1", "/api/users/5",
                 "/api/hello?r=2"]


def _with_rules(project: Path) -> None:
    config = json.loads((project / "vercel.json").read_text())
    (project / "vercel.json").write_text(json.dumps({**config, **RULES}))


def test_vercel_json_rules_keep_their_paths_on_the_front(fresh: Callable[..., StartServer]) -> None:
    """Redirects, rewrites and headers rules: a path one of their sources matches is served by the
    front (a first request is not passed, a later one is handed back), every other function path
    still goes direct; the answers are the frames path's."""
    direct, frames = fresh(before=_with_rules), fresh("--no-direct-path", before=_with_rules)
    for srv in (direct, frames):
        warm(srv.url, "/api/hello", "/api/asgi", "/api/files/x", "/api/users/0")
    before = metrics(direct.url)
    for n, path in enumerate(RULE_REQUESTS):  # each first on a connection
        with Conn(direct.url) as a, Conn(frames.url) as b:
            headers = [("X-Request-Id", f"rule-{n}")]
            x, y = a.request("GET", path, headers), b.request("GET", path, headers)
            assert x.comparable() == y.comparable(), path
    passed = delta(direct.url, before, PASSED)
    assert passed == 3, passed  # /api/hello twice and /api/users/5; the rules' paths stay on the front
    with Conn(direct.url) as a, Conn(frames.url) as b:  # all on one connection, passed at its first request
        for n, path in enumerate(RULE_REQUESTS):
            headers = [("X-Request-Id", f"rule-ka-{n}")]
            x, y = a.request("GET", path, headers), b.request("GET", path, headers)
            assert x.comparable() == y.comparable(), path
    assert delta(direct.url, before, PASSED) == passed + 1
    assert delta(direct.url, before, HANDED_BACK) >= 1
    assert metrics(frames.url).get(PASSED) == 0


def test_trailing_slash_turns_the_direct_path_off(fresh: Callable[..., StartServer]) -> None:
    """Legacy ``routes`` and ``trailingSlash`` may apply to any path: nothing is passed."""
    def trailing_slash(project: Path) -> None:
        config = json.loads((project / "vercel.json").read_text())
        (project / "vercel.json").write_text(json.dumps({**config, "trailingSlash": False}))

    srv = fresh(before=trailing_slash)
    warm(srv.url, "/api/hello")
    with httpx.Client(base_url=srv.url, timeout=10, follow_redirects=False) as client:
        for i in range(5):
            assert client.get(f"/api/hello?i={i}").text == f"handler /api/hello?i={i}"
        r = client.get("/api/hello/")
        assert r.status_code == 308 and r.headers["location"] == "/api/hello"
    with Conn(srv.url) as conn:
        assert conn.request("GET", "/api/hello?raw").body == b"handler /api/hello?raw"
    m = metrics(srv.url)
    assert m.get(PASSED) == 0 and m.get(HANDED_BACK) == 0
