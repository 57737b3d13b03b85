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
