"""The front app's pipeline in process (rules, scope building, errors) with a fake route table
and an in-process dispatcher that answers with the scope it was given."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from devserver import serve_app

from fnserve.errors import WorkerCrashed
from fnserve.project.pathpattern import PathPattern
from fnserve.project.types import Entry, EntryKind, Function, Layout, Route, RouteMatch, Segment
from fnserve.project.vercel_types import HeaderRule, Redirect, Rewrite
from fnserve.server.app import FrontApp, Site, SiteProblem, function_scope
from fnserve.server.rules import Rules
from fnserve.server.static import StaticFiles


def fn(fid: str, layout: Layout = Layout.VERCEL, kind: EntryKind = EntryKind.HANDLER) -> Function:
    return Function(fid, Path("/p") / fid, fid.replace("/", ".")[:-3], layout, Entry(kind, "handler", 1), (Path("/p"),))


def route(pattern: str, function: Function, mount: bool = False) -> Route:
    segs = []
    for part in filter(None, pattern.split("/")):
        segs.append(Segment("param", part[1:-1]) if part.startswith("[") else Segment("literal", part))
    return Route(pattern, tuple(segs), function, mount=mount)


class FakeRoutes:
    """Literal routes, one-segment params, mounts (prefix at a segment boundary)."""

    def __init__(self, *routes: Route) -> None:
        self.routes = routes

    def match(self, path: str) -> RouteMatch | None:
        parts = [p for p in path.split("/") if p]
        for r in self.routes:
            segs = r.segments
            if r.mount:
                if parts[: len(segs)] == [s.value for s in segs]:
                    root = r.static_prefix if r.function.layout is Layout.EDGEONE else ""
                    return RouteMatch(r, {}, root, path)
                continue
            if len(parts) != len(segs):
                continue
            params = {}
            for s, p in zip(segs, parts):
                if s.kind == "literal" and s.value != p:
                    break
                if s.kind == "param":
                    params[s.value] = p
            else:
                return RouteMatch(r, params, "", path)
        return None


async def echo(function, scope, receive, send):
    if function.id == "api/crash.py":
        raise WorkerCrashed("api/crash.py")
    body = json.dumps({
        "fn": function.id, "path": scope["path"], "raw_path": scope["raw_path"].decode(),
        "root_path": scope["root_path"], "query": scope["query_string"].decode(),
        "params": scope["fnserve.route_params"],
    }).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"cache-control", b"fn")]})
    await send({"type": "http.response.body", "body": body})


HELLO, USER, CRASH = fn("api/hello.py"), fn("api/users/[id].py"), fn("api/crash.py")
EO = fn("cloud-functions/api/flaskapp/index.py", Layout.EDGEONE, EntryKind.APP)
APP = fn("app.py", Layout.APP, EntryKind.APP)
ROUTES = FakeRoutes(
    route("/api/hello", HELLO), route("/api/users/[id]", USER), route("/api/crash", CRASH),
    route("/api/flaskapp", EO, mount=True), route("/", APP, mount=True),
)


def P(s: str) -> PathPattern:
    return PathPattern.compile(s)


RULES = Rules(
    redirects=(Redirect(P("/old/:x"), "/new/:x", 308), Redirect(P("/temp"), "/api/hello", 307)),
    rewrites=(Rewrite(P("/u/:id"), "/api/users/:id"), Rewrite(P("/short"), "/api/hello?via=short"),
              Rewrite(P("/legacy/:rest*"), "/modern/:rest*"), Rewrite(P("/ext"), "https://example.com/")),
    headers=(HeaderRule(P("/api/(.*)"), (("X-Custom", "yes"), ("Cache-Control", "rule"))),),
)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    pub = tmp_path_factory.mktemp("p") / "public"
    pub.mkdir()
    (pub / "robots.txt").write_text("ok")
    site = Site(routes=ROUTES, rules=RULES, static=StaticFiles(pub), body_limit=100)
    with serve_app(FrontApp(site, echo)) as url:
        yield url


def get(base: str, target: str, **kw) -> httpx.Response:
    return httpx.get(base + target, follow_redirects=False, **kw)


def test_vercel_query_merge_and_params(base: str) -> None:
    j = get(base, "/api/users/42?y=2").json()
    assert j["fn"] == "api/users/[id].py" and j["query"] == "y=2&id=42" and j["params"] == {"id": "42"}
    assert j["path"] == "/api/users/42" and j["root_path"] == ""


def test_edgeone_root_path(base: str) -> None:
    j = get(base, "/api/flaskapp/users?q=1").json()
    assert j["root_path"] == "/api/flaskapp" and j["path"] == "/api/flaskapp/users" and j["query"] == "q=1"


def test_redirects(base: str) -> None:
    r = get(base, "/old/a?x=1&y=2")
    assert r.status_code == 308 and r.headers["location"] == "/new/a?x=1&y=2"
    r = get(base, "/temp")
    assert r.status_code == 307 and r.headers["location"] == "/api/hello"


def test_rewrite_to_function_sees_original_url(base: str) -> None:
    j = get(base, "/u/7?z=1").json()
    assert j["fn"] == "api/users/[id].py" and j["path"] == "/u/7" and j["raw_path"] == "/u/7"
    assert j["query"].startswith("z=1&") and "id=7" in j["query"]
    j = get(base, "/short").json()
    assert j["fn"] == "api/hello.py" and j["path"] == "/short" and j["query"] == "via=short"


def test_rewrite_to_app_sees_rewritten_path(base: str) -> None:
    j = get(base, "/legacy/a/b?k=v").json()
    assert j["fn"] == "app.py" and j["path"] == "/modern/a/b" and j["query"].startswith("k=v")


def test_filesystem_before_rewrites_and_static_first(base: str) -> None:
    assert get(base, "/api/hello").json()["path"] == "/api/hello"
    assert get(base, "/robots.txt").text == "ok"
    assert get(base, "/anything/else").json()["fn"] == "app.py"


def test_custom_headers_override(base: str) -> None:
    r = get(base, "/api/hello")
    assert r.headers["x-custom"] == "yes" and r.headers["cache-control"] == "rule"
    assert "x-custom" not in get(base, "/robots.txt").headers


def test_errors(base: str) -> None:
    r = get(base, "/api/crash")
    assert r.status_code == 502 and r.json()["error"]["code"] == "NO_RESPONSE_FROM_FUNCTION"
    r = get(base, "/api/crash", headers={"Accept": "text/html"})
    assert r.status_code == 502 and r.text.startswith("<!doctype html>")
    r = httpx.post(base + "/api/hello", content=b"x" * 101)
    assert r.status_code == 413 and r.json()["error"]["code"] == "FUNCTION_PAYLOAD_TOO_LARGE"
    r = get(base, "/ext")
    assert r.status_code == 502 and "external" in r.json()["error"]["message"]


def test_404_and_problem(tmp_path: Path) -> None:
    site = Site(routes=FakeRoutes(route("/api/hello", HELLO)))
    with serve_app(FrontApp(site, echo)) as url:
        r = get(url, "/nope")
        assert r.status_code == 404 and r.json() == {"error": {"code": "NOT_FOUND", "message": "no static file or function serves /nope"}}
    site = Site(routes=None, problem=SiteProblem("vercel.json: rewrites: bad", "details"))
    with serve_app(FrontApp(site, echo)) as url:
        r = get(url, "/api/hello")
        assert r.status_code == 500 and "vercel.json" in r.json()["error"]["message"]


def test_trailing_slash(tmp_path: Path) -> None:
    for flag, target, location in ((True, "/api/hello?a=1", "/api/hello/?a=1"), (False, "/api/hello/", "/api/hello")):
        site = Site(routes=ROUTES, rules=Rules(trailing_slash=flag))
        with serve_app(FrontApp(site, echo)) as url:
            r = get(url, target)
            assert r.status_code == 308 and r.headers["location"] == location
            assert get(url, "/robots.txt").status_code != 308 or flag is False


def test_function_scope_pure() -> None:
    m = RouteMatch(route("/api/users/[id]", USER), {"id": "a b"}, "", "/api/users/a b")
    scope = {"type": "http", "path": "/api/users/a b", "raw_path": b"/api/users/a%20b", "query_string": b"", "root_path": "", "headers": []}
    out = function_scope(scope, m)
    assert out["query_string"] == b"id=a%20b" and out["raw_path"] == b"/api/users/a%20b"
    assert scope["query_string"] == b""  # the original scope is not mutated


def test_legacy_routes() -> None:
    from fnserve.project.pathpattern import RegexPattern
    from fnserve.project.vercel_types import LegacyRoute

    def R(src: str, **kw) -> LegacyRoute:
        return LegacyRoute(src, RegexPattern.compile(src), **kw)

    rules = Rules(routes=(
        R("/go/(.*)", status=301, headers=(("Location", "/api/users/$1"),)),
        R("/gone", status=410),
        R("/p/(?<id>[^/]+)", dest="/api/users/$id?from=legacy", headers=(("X-Legacy", "1"),)),
    ))
    with serve_app(FrontApp(Site(routes=ROUTES, rules=rules), echo)) as url:
        r = get(url, "/go/9")
        assert r.status_code == 301 and r.headers["location"] == "/api/users/9"
        assert get(url, "/gone").status_code == 410
        r = get(url, "/p/5?a=b")
        j = r.json()
        assert r.headers["x-legacy"] == "1" and j["fn"] == "api/users/[id].py" and j["path"] == "/p/5"
        assert j["query"] == "a=b&from=legacy&id=5"


def test_vercel_catch_all_params_reach_the_query_under_vercels_names():
    """Vercel names a catch-all's query key after the text inside the file name's outer brackets
    (`vercel build` writes `dest: /api/files/[...path]?...path=$1`; seen with Vercel's own runtime)."""
    from fnserve.project import load_project
    from fnserve.project.routes import query_key
    from fnserve.project.types import Segment
    from fnserve.server.app import function_scope

    project = load_project(Path(__file__).parents[1] / "projects" / "vercel_routes")
    files = project.routes.match("/api/files/a/b")
    docs = project.routes.match("/api/docs/x/y")
    user = project.routes.match("/api/users/7")
    scope = {"type": "http", "path": "", "query_string": b"q=1"}
    assert function_scope(scope, files)["query_string"] == b"q=1&...path=a%2Fb"
    assert function_scope(scope, docs)["query_string"] == b"q=1&[...slug]=x%2Fy"
    assert function_scope(scope, user)["query_string"] == b"q=1&id=7"
    assert function_scope(scope, files)["fnserve.route_params"] == {"path": "a/b"}
    assert [query_key(Segment(k, "s")) for k in ("param", "catchall", "optional")] == ["s", "...s", "[...s]"]
