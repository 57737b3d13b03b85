"""RouteTable: specificity (SPEC §3.2), mounts (§3.4), conflicts, and agreement with a naive
priority-sorted regex scan on random route sets."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from fnserve.errors import DuplicateRouteError
from fnserve.project import load_project
from fnserve.project.matcher import RouteTable, split_path
from fnserve.project.routes import routes_for
from fnserve.project.types import Entry, EntryKind, Function, Layout

PROJECTS = Path(__file__).parents[1] / "projects"
ROOT = Path("/srv/project")


def make_routes(files: dict[str, EntryKind], layout: Layout = Layout.VERCEL):
    """Routes for synthetic files (no filesystem needed): ``{"api/x.py": EntryKind.HANDLER}``."""
    base = ROOT / "cloud-functions" if layout is Layout.EDGEONE else ROOT
    out = []
    for rel, kind in files.items():
        path = base / rel
        roots = (ROOT, base) if layout is Layout.EDGEONE else (ROOT,)
        fn = Function(path.relative_to(ROOT).as_posix(), path, rel, layout, Entry(kind, "x", 1), roots)
        out += [r for r in routes_for(fn, base) if not r.alias]
    return out


@pytest.fixture(scope="module")
def priority():
    return load_project(PROJECTS / "priority")


@pytest.mark.parametrize(
    "path, file, params",
    [
        ("/api/items/new", "api/items/new.py", {}),  # literal beats [id]
        ("/api/items/42", "api/items/[id].py", {"id": "42"}),  # [id] beats [...rest]
        ("/api/items/42/edit", "api/items/[id]/edit.py", {"id": "42"}),
        ("/api/items/42/other", "api/items/[...rest].py", {"rest": "42/other"}),
        ("/api/things/new", "api/[section]/new.py", {"section": "things"}),
        ("/api/things/7", "api/[section]/[id].py", {"section": "things", "id": "7"}),
        ("/api/items", "api/[[...all]].py", {"all": "items"}),  # backtracks out of /api/items
        ("/api", "api/[[...all]].py", {"all": ""}),
        ("/api/a/b/c", "api/[[...all]].py", {"all": "a/b/c"}),
        ("/api/v1", "api/v1/index.py", {}),  # the FastAPI mount
        ("/api/v1/new", "api/v1/[...rest].py", {"rest": "new"}),  # literal v1 beats [section]
        ("/api/items/42/", "api/items/[id].py", {"id": "42"}),  # trailing slash ignored
    ],
)
def test_specificity(priority, path, file, params):
    hit = priority.routes.match(path)
    assert hit.function.id == file
    assert dict(hit.params) == params
    assert hit.path == path


def test_routes_are_listed_in_priority_order(priority):
    order = [r.pattern for r in priority.routes.routes if not r.alias]
    assert order.index("/api/items/new") < order.index("/api/items/[id]") < order.index("/api/items/[...rest]")
    assert order.index("/api/items/[id]") < order.index("/api/items/[id]/edit")
    assert order.index("/api/v1/[...rest]") < order.index("/api/v1")  # mount after everything below it
    assert order[-1] == "/api/[[...all]]"


def test_equal_shapes_more_segments_wins():
    table = RouteTable(make_routes({"api/index.py": EntryKind.APP, "api/v1/index.py": EntryKind.APP}))
    assert table.match("/api/v1/users").function.id == "api/v1/index.py"
    assert table.match("/api/v2/users").function.id == "api/index.py"


def test_exact_beats_mount_and_mount_only_at_segment_boundary():
    table = RouteTable(make_routes({"api/index.py": EntryKind.APP, "api/health.py": EntryKind.HANDLER}))
    assert table.match("/api/health").function.id == "api/health.py"
    assert table.match("/api/health/deep").function.id == "api/index.py"  # handlers are exact only
    assert table.match("/api").function.id == "api/index.py"
    assert table.match("/apihealth") is None


def test_handler_at_static_route_is_exact_only():
    table = RouteTable(make_routes({"api/hello.py": EntryKind.HANDLER}))
    assert table.match("/api/hello/world") is None


def test_edgeone_mount_root_path():
    table = RouteTable(make_routes({"api/flaskapp/index.py": EntryKind.APP}, Layout.EDGEONE))
    hit = table.match("/api/flaskapp/users")
    assert (hit.root_path, hit.path) == ("/api/flaskapp", "/api/flaskapp/users")
    assert table.match("/api/flaskappx") is None


def test_edgeone_framework_app_at_dynamic_route_strips_static_prefix():
    table = RouteTable(make_routes({"api/[id].py": EntryKind.APPLICATION}, Layout.EDGEONE))
    hit = table.match("/api/42")
    assert not hit.route.mount and hit.root_path == "/api" and hit.params == {"id": "42"}


def test_empty_segments_match_no_param():
    table = RouteTable(make_routes({"api/[id].py": EntryKind.HANDLER}))
    assert table.match("/api//") is None  # trailing slashes ignored: this is /api
    assert table.match("//api/1") is None
    assert table.match("/api/1//").params == {"id": "1"}


@pytest.mark.parametrize("path, parts", [("/", []), ("", []), ("/a/", ["a"]), ("/a//b", ["a", "", "b"]), ("//a", ["", "a"]), ("a/b", ["a", "b"])])
def test_split_path(path, parts):
    assert split_path(path) == parts


@pytest.mark.parametrize(
    "case, route, files",
    [
        ("conflict_params", "/api/users/[id]", {"api/users/[id].py", "api/users/[slug].py"}),
        ("conflict_index", "/api/hello", {"api/hello.py", "api/hello/index.py"}),
        ("conflict_catchall", "/api/[[...rest]]", {"cloud-functions/api/[[...rest]].py", "cloud-functions/api/[[rest]].py"}),
    ],
)
def test_duplicate_routes_are_errors_naming_both_files(case, route, files):
    with pytest.raises(DuplicateRouteError) as info:
        load_project(PROJECTS / case)
    assert set(info.value.files) == files
    for file in files:
        assert file in str(info.value)
    assert info.value.hint


def test_cross_layout_duplicate(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "cloud-functions" / "api").mkdir(parents=True)
    source = "def handler(event, context):\n    return {}\n"
    (tmp_path / "api" / "hello.py").write_text(source)
    (tmp_path / "cloud-functions" / "api" / "hello.py").write_text(source)
    with pytest.raises(DuplicateRouteError, match="cloud-functions/api/hello.py"):
        load_project(tmp_path)


# --- agreement with the naive baseline -------------------------------------------------------

_RANK = {"literal": 0, "param": 1, "catchall": 2, "optional": 3}


def _naive(routes):
    """Linear scan of regexes sorted by the documented priority (the bench baseline)."""
    compiled = []
    for r in routes:
        rx = ""
        for seg in r.segments:
            rx += {"literal": "/" + re.escape(seg.value), "param": "/([^/]+)", "catchall": "/(.+)", "optional": "/(.+)"}[seg.kind]
        rx += "(?:/.*)?" if r.mount else ""
        key = [(_RANK[s.kind], s.value if s.kind == "literal" else "") for s in r.segments] + [(9 if r.mount else -1, "")]
        compiled.append((key, re.compile("^" + rx + "/?$"), r))
        if r.segments and r.segments[-1].kind == "optional":
            # its empty match: like a route ending at its prefix, after an exact route or a mount there
            prefix = rx[: rx.rindex("/(.+)")]
            compiled.append((key[:-2] + [(10, "")], re.compile("^" + prefix + "/?$"), r))
    compiled.sort(key=lambda item: item[0])

    def match(path):
        for _, rx, r in compiled:
            if rx.match(path.rstrip("/") or ""):
                return r
        return None

    return match


def test_trie_agrees_with_naive_scan_on_random_projects():
    rng = random.Random(7)
    words = ["a", "b", "c"]
    for _ in range(40):
        files = {}
        for _ in range(rng.randint(3, 12)):
            depth = rng.randint(1, 3)
            parts = [rng.choice(words + ["[p]", "[q]"]) for _ in range(depth - 1)]
            last = rng.choice(words + ["[p]", "[...r]", "[[...o]]", "[[e]]", "index"])
            kind = rng.choice([EntryKind.HANDLER, EntryKind.APP])
            files["/".join(["api", *parts, last]) + ".py"] = kind
        try:
            routes = make_routes(files)
            table = RouteTable(routes)
        except (DuplicateRouteError, ValueError):
            continue
        naive = _naive(routes)
        for _ in range(30):
            path = "/api/" + "/".join(rng.choice(words + ["x"]) for _ in range(rng.randint(0, 4)))
            got = table.match(path)
            assert (got.route if got else None) == naive(path), (path, sorted(files))
