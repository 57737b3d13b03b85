"""The front's half of the direct path (issue 14 item 2, ``server.direct``): which first requests
may be passed to an instance. What is passed is served by the instance (tests/runtime/test_direct.py,
tests/server/test_direct_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

from fnserve.config import load_config
from fnserve.project import load_project
from fnserve.server.app import Site, static_for
from fnserve.server.direct import SitePlan, parse_first_head, static_exclusions
from fnserve.server.rules import from_config

HANDLER = "from http.server import BaseHTTPRequestHandler\nclass handler(BaseHTTPRequestHandler):\n    pass\n"


def _site(root: Path, files: dict[str, str]) -> Site:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    config = load_config(root, {}, mode="start")
    rules = from_config(config.vercel)
    project = load_project(root)
    return Site(routes=project.routes, rules=rules, static=static_for(root, rules.clean_urls), body_limit=1000)


def test_parse_first_head_splits_and_lowercases() -> None:
    head = parse_first_head(b"GET /api/a%20b?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 0")
    assert head is not None
    assert (head.method, head.path, head.version) == (b"GET", "/api/a b", b"HTTP/1.1")
    assert head.headers == ((b"host", b"h"), (b"content-length", b"0"))
    for bad in (b"GET /x", b"GET x HTTP/1.1", b"GET /x HTTP/1.1\r\nno colon", b"GET /x HTTP/1.1\r\n folded: v",
                b"GET /\xff HTTP/1.1"):
        assert parse_first_head(bad) is None, bad


def test_plan_passes_function_routes_only(tmp_path: Path) -> None:
    site = _site(tmp_path, {"api/a.py": HANDLER, "api/users/[id].py": HANDLER, "api/users/me.py": HANDLER,
                            "public/index.html": "hi", "public/static/x.css": "", "public/about.html": ""})
    plan = SitePlan.of(site)
    assert plan.eligible
    assert plan.function_for("/api/a").id == "api/a.py"
    assert plan.function_for("/api/users/7").id == "api/users/[id].py"
    assert plan.function_for("/api/users/me").id == "api/users/me.py"
    for front in ("/", "/static/x.css", "/static", "/about", "/about.html", "/_fnserve/health", "/nothing"):
        assert plan.function_for(front) is None, front
    routes = {r["pattern"]: r for r in plan.routes}
    assert routes["/api/users/[id]"]["segments"] == [["literal", "api"], ["literal", "users"], ["param", "id"]]
    assert routes["/api/users/[id]"]["function"] == "api/users/[id].py"
    json.dumps(plan.routes)  # the plan travels as JSON


def test_vercel_json_rules_keep_the_paths_they_match_on_the_front(tmp_path: Path) -> None:
    rules = {"redirects": [{"source": "/old", "destination": "/api/a"}],
             "rewrites": [{"source": "/api/b/:x*", "destination": "/api/a"}],
             "headers": [{"source": "/api/c", "headers": [{"key": "x-c", "value": "1"}]}]}
    site = _site(tmp_path, {"api/a.py": HANDLER, "api/b.py": HANDLER, "api/c.py": HANDLER,
                            "api/d.py": HANDLER, "vercel.json": json.dumps(rules)})
    plan = SitePlan.of(site)
    assert plan.eligible
    assert plan.function_for("/api/a").id == "api/a.py" and plan.function_for("/api/d").id == "api/d.py"
    for front in ("/old", "/api/b", "/api/b/1", "/api/c"):
        assert plan.function_for(front) is None, front
    _sup, router = _router()
    router.swap(site)
    patterns = router.plan_for("api/a.py")["exclude_patterns"]
    assert len(patterns) == 3 and all(isinstance(p, str) for p in patterns)
    legacy = _site(tmp_path / "legacy", {"api/a.py": HANDLER, "vercel.json": json.dumps({"trailingSlash": True})})
    assert not SitePlan.of(legacy).eligible and SitePlan.of(legacy).function_for("/api/a") is None


def test_static_exclusions_cover_folders_and_clean_urls(tmp_path: Path) -> None:
    (tmp_path / "public" / "img").mkdir(parents=True)
    (tmp_path / "public" / "index.html").write_text("")
    (tmp_path / "public" / "docs.html").write_text("")
    assert static_exclusions(static_for(tmp_path, False)) == ["/", "/docs", "/docs.html", "/img", "/img/",
                                                              "/index.html"]
    assert static_exclusions(static_for(tmp_path / "nothing", False)) == []


class _Supervisor:
    """The hooks ``DirectRouter`` sets and calls (``Supervisor``'s direct-path API)."""

    def __init__(self) -> None:
        self.provider = None
        self.refreshed = 0

    def set_direct_plan(self, provider) -> None:
        self.provider = provider

    def refresh_direct_plans(self) -> int:
        self.refreshed += 1
        return 1


def _router(metrics=None):
    from fnserve.server.direct import DirectRouter
    from fnserve.server.frontdoor import FrontLimits

    sup = _Supervisor()
    return sup, DirectRouter(sup, FrontLimits(), metrics=metrics, max_duration=lambda fid: 7.0)


def test_router_plans_only_eligible_functions(tmp_path: Path) -> None:
    sup, router = _router()
    assert sup.provider == router.plan_for and sup.on_hand_back == router.hand_back
    assert router.plan_for("api/a.py") is None  # no site yet
    router.swap(_site(tmp_path, {"api/a.py": HANDLER}))
    assert sup.refreshed == 1
    plan = router.plan_for("api/a.py")
    assert plan is not None and plan["function"] == "api/a.py" and plan["max_duration"] == 7.0
    assert plan["body_limit"] == 1000 and plan["header_limit"] == 65536 and plan["exclude"] == ["/_fnserve/"]
    assert router.plan_for("api/b.py") is None


def test_reports_count_metrics_and_a_lost_request_gets_the_fronts_answer() -> None:
    import socket

    from fnserve.errors import DurationExceeded
    from fnserve.server.metrics import Metrics

    metrics = Metrics()
    _sup, router = _router(metrics)
    router.report("api/a.py", 42, [["id1", "GET", "/api/a?x=1", 200, 1.5], ["id2", "POST", "/api/a", 500, 2.0]])
    assert metrics.requests[("api/a.py", 200)] == 1 and metrics.requests[("api/a.py", 500)] == 1
    front, client = socket.socketpair()
    router.lost(front, "api/a.py", DurationExceeded("api/a.py", 2.0))
    answer = client.recv(65536)
    client.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 504 Gateway Timeout\r\n") and b"connection: close" in head
    assert json.loads(body)["error"]["code"] == "FUNCTION_INVOCATION_TIMEOUT"
    assert metrics.direct["lost"] == 1 and metrics.requests[("api/a.py", 504)] == 1


def test_a_content_length_python_cannot_parse_is_not_plain() -> None:
    from fnserve.server.direct import _plain

    assert _plain([(b"content-length", b"12")], 100)
    assert not _plain([(b"content-length", b"1" * 5000)], None)  # int() refuses 4300+ digits
    assert not _plain([(b"content-length", b"1"), (b"content-length", b"1")], None)
    assert not _plain([(b"transfer-encoding", b"chunked")], None)


def test_an_instance_gets_only_the_routes_that_decide_its_paths(tmp_path: Path) -> None:
    from fnserve.runtime.direct import DirectPlan

    files = {f"api/f{i}.py": HANDLER for i in range(50)}
    files.update({"api/users/[id].py": HANDLER, "api/users/me.py": HANDLER})
    site = _site(tmp_path, files)
    plan = SitePlan.of(site)
    literal = {r["pattern"] for r in plan.routes_for("api/f7.py")}
    assert literal == {"/api/f7", "/api/f7.py"}  # its route and its alias: not the 51 others
    me = {r["pattern"] for r in plan.routes_for("api/users/me.py")}
    assert "/api/users/[id]" in me and "/api/f7" not in me
    dynamic = {r["pattern"] for r in plan.routes_for("api/users/[id].py")}
    assert "/api/users/me" in dynamic and "/api/f7" not in dynamic
    # the worker, given only those routes, decides every path as the whole table does
    table = site.routes
    for fid in ("api/f7.py", "api/users/me.py", "api/users/[id].py"):
        worker = DirectPlan({"function": fid, "routes": plan.routes_for(fid)})
        for path in ("/api/f7", "/api/f7.py", "/api/f8", "/api/users/me", "/api/users/9", "/api/users", "/x"):
            whole = table.match(path)
            assert (worker.route(path) is not None) == (whole is not None and whole.function.id == fid), (fid, path)


# ---------------------------------------------------------------------------------------------
# later request boundaries (FrontHttpProtocol + DirectRouter.try_pass's verdicts), over a real
# loopback server with a router that records what it is offered and never passes


class _OfferedRouter:
    """``DirectRouter``'s side ``FrontHttpProtocol`` calls: ``try_pass`` records the bytes it is
    offered and answers BUSY for paths under ``/busy`` (a function that is cold), FRONT for any
    other; ``held()``: connections "instances" hold (``held``)."""

    enabled = True

    def __init__(self, held: int = 0) -> None:
        self.offered: list[bytes] = []
        self.held_now = held

    def try_pass(self, protocol: object, data: bytes, end: int):
        from fnserve.server.direct import Verdict

        assert data[end:end + 4] == b"\r\n\r\n"
        self.offered.append(data)
        return Verdict.BUSY if data.split(b" ", 2)[1].startswith(b"/busy") else Verdict.FRONT

    def held(self) -> int:
        return self.held_now


async def _echo_app(scope, receive, send) -> None:
    """Answers ``<method> <path>?<query> <body>``, after ``?sleep=S`` seconds when given."""
    import asyncio

    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    query = scope["query_string"].decode()
    if query.startswith("sleep="):
        await asyncio.sleep(float(query[6:]))
    out = f"{scope['method']} {scope['path']}?{query} ".encode() + body
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(out))]})
    await send({"type": "http.response.body", "body": out})


def _req(target: str, body: bytes = b"") -> bytes:
    method = "POST" if body else "GET"
    length = f"content-length: {len(body)}\r\n" if body else ""
    return f"{method} {target} HTTP/1.1\r\nhost: t\r\n{length}\r\n".encode() + body


class _Client:
    """A raw keep-alive connection reading Content-Length responses."""

    def __init__(self, url: str) -> None:
        import socket

        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=5)
        self.buf = b""

    def answer(self) -> tuple[int, bytes]:
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(self.buf)
            self.buf += chunk
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        while len(rest) < length:
            rest += self.sock.recv(65536)
        self.buf = rest[length:]
        return int(head[9:12]), rest[:length]


def _served(router: _OfferedRouter, **limits: object):
    from devserver import serve_app

    from fnserve.server.frontdoor import FrontLimits, uvicorn_options

    return serve_app(_echo_app, **uvicorn_options(FrontLimits(**limits), router))  # type: ignore[arg-type]


def test_a_connection_is_offered_again_at_each_boundary_while_busy_and_never_after_front() -> None:
    router = _OfferedRouter()
    with _served(router) as url:
        conn = _Client(url)
        steps = [("/busy/1", b"", True), ("/busy/2", b"abc", True), ("/front/3", b"", True), ("/busy/4", b"", False),
                 ("/busy/5", b"", False)]
        for target, body, offered in steps:
            before = len(router.offered)
            conn.sock.sendall(_req(target, body))
            method = "POST" if body else "GET"
            assert conn.answer() == (200, f"{method} {target}? ".encode() + body)
            # each later request is offered alone, head and body bytes as the client sent them
            assert router.offered[before:] == ([_req(target, body)] if offered else []), target
        conn.sock.close()


def test_pipelined_bytes_fed_to_the_parser_are_never_offered() -> None:
    import time

    router = _OfferedRouter()
    with _served(router) as url:
        conn = _Client(url)
        conn.sock.sendall(_req("/busy/1") + _req("/busy/2"))  # one write: offered together as the first head
        assert [conn.answer(), conn.answer()] == [(200, b"GET /busy/1? "), (200, b"GET /busy/2? ")]
        assert router.offered == [_req("/busy/1") + _req("/busy/2")]
        conn.sock.sendall(_req("/busy/3?sleep=1.5"))  # offered (a boundary), then served by the front
        time.sleep(0.1)
        conn.sock.sendall(_req("/busy/4"))  # arrives while /busy/3 is answered: the parser takes it
        assert [conn.answer(), conn.answer()] == [(200, b"GET /busy/3?sleep=1.5 "), (200, b"GET /busy/4? ")]
        assert router.offered[1:] == [_req("/busy/3?sleep=1.5")]
        conn.sock.sendall(_req("/busy/5"))  # the next boundary: offered again
        assert conn.answer() == (200, b"GET /busy/5? ")
        assert router.offered[2:] == [_req("/busy/5")]
        conn.sock.close()


def test_a_later_head_in_pieces_is_held_until_complete_and_keeps_the_head_timeout() -> None:
    import time

    router = _OfferedRouter()
    with _served(router, header_timeout=0.5) as url:
        conn = _Client(url)
        conn.sock.sendall(_req("/busy/1"))
        assert conn.answer() == (200, b"GET /busy/1? ")
        whole = _req("/busy/2", b"xyz")
        for i in range(0, len(whole), 9):
            conn.sock.sendall(whole[i:i + 9])
            time.sleep(0.02)
        assert conn.answer() == (200, b"POST /busy/2? xyz")
        head = whole[:whole.index(b"\r\n\r\n") + 4]
        assert len(router.offered) == 2 and router.offered[0] == _req("/busy/1")
        assert router.offered[1].startswith(head) and whole.startswith(router.offered[1])  # once, when complete
        conn.sock.sendall(b"GET /busy/3 HTTP/1.1\r\nhost:")  # held, never completed
        t0 = time.monotonic()
        assert conn.answer()[0] == 408
        assert 0.3 < time.monotonic() - t0 < 3.0
        assert len(router.offered) == 2
        conn.sock.close()


def test_connections_instances_hold_count_in_max_connections() -> None:
    router = _OfferedRouter(held=2)
    with _served(router, max_connections=3) as url:
        first = _Client(url)  # 1 here + 2 held = 3: served
        first.sock.sendall(_req("/front/1"))
        assert first.answer() == (200, b"GET /front/1? ")
        second = _Client(url)  # 2 + 2: over
        assert second.answer()[0] == 503
        second.sock.close()
        router.held_now = 1  # an instance let one go
        third = _Client(url)
        third.sock.sendall(_req("/front/3"))
        assert third.answer() == (200, b"GET /front/3? ")
        first.sock.close()
        third.sock.close()
