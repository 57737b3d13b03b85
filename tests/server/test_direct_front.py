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


def test_vercel_json_rules_turn_the_direct_path_off(tmp_path: Path) -> None:
    site = _site(tmp_path, {"api/a.py": HANDLER,
                            "vercel.json": json.dumps({"redirects": [{"source": "/old", "destination": "/api/a"}]})})
    plan = SitePlan.of(site)
    assert not plan.eligible and plan.function_for("/api/a") is None


def test_static_exclusions_cover_folders_and_clean_urls(tmp_path: Path) -> None:
    (tmp_path / "public" / "img").mkdir(parents=True)
    (tmp_path / "public" / "index.html").write_text("")
    (tmp_path / "public" / "docs.html").write_text("")
    assert static_exclusions(static_for(tmp_path, False)) == ["/", "/docs", "/docs.html", "/img", "/img/",
                                                              "/index.html"]
    assert static_exclusions(static_for(tmp_path / "nothing", False)) == []
