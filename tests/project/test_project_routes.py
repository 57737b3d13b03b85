"""From files to routes (SPEC §3.1) on fixture projects in both layouts, every bracket syntax."""

from __future__ import annotations

from pathlib import Path

import pytest

from fnserve.project import EntryKind, Layout, load_project
from fnserve.project.routes import parse_segment
from fnserve.project.types import Segment

PROJECTS = Path(__file__).parents[1] / "projects"


@pytest.fixture(scope="module")
def vercel():
    return load_project(PROJECTS / "vercel_routes")


@pytest.fixture(scope="module")
def edgeone():
    return load_project(PROJECTS / "edgeone_routes")


@pytest.mark.parametrize(
    "name, segment",
    [
        ("users", Segment("literal", "users")),
        ("[id]", Segment("param", "id")),
        ("[[default]]", Segment("optional", "default")),
        ("[...path]", Segment("catchall", "path")),
        ("[[...slug]]", Segment("optional", "slug")),
        ("hello.py", Segment("literal", "hello.py")),
        ("user-[id]", Segment("literal", "user-[id]")),
        ("[]", Segment("literal", "[]")),
    ],
)
def test_parse_segment(name, segment):
    assert parse_segment(name) == segment


def test_vercel_layout_routes(vercel):
    patterns = {(r.pattern, r.function.id, r.mount, r.alias) for r in vercel.routes.routes}
    assert patterns == {
        ("/api", "api/index.py", False, False),
        ("/api/index", "api/index.py", False, True),
        ("/api/index.py", "api/index.py", False, True),
        ("/api/hello", "api/hello.py", False, False),
        ("/api/hello.py", "api/hello.py", False, True),
        ("/api/flask_app", "api/flask_app.py", True, False),
        ("/api/flask_app.py", "api/flask_app.py", False, True),
        ("/api/users", "api/users/index.py", False, False),
        ("/api/users/index", "api/users/index.py", False, True),
        ("/api/users/index.py", "api/users/index.py", False, True),
        ("/api/users/[id]", "api/users/[id].py", False, False),
        ("/api/posts/[slug]/comments", "api/posts/[slug]/comments.py", False, False),
        ("/api/posts/[slug]/comments.py", "api/posts/[slug]/comments.py", False, True),
        ("/api/files/[...path]", "api/files/[...path].py", False, False),
        ("/api/docs/[[...slug]]", "api/docs/[[...slug]].py", False, False),
    }


def test_vercel_functions_modules_and_import_roots(vercel):
    fn = vercel.function("api/users/[id].py")
    assert fn.module == "api.users.[id]"
    assert fn.layout is Layout.VERCEL
    assert fn.import_roots == (vercel.root,)
    assert fn.path == vercel.root / "api" / "users" / "[id].py"
    assert vercel.function("api/users/index.py").module == "api.users.index"
    assert vercel.function("api/flask_app.py").entry.kind is EntryKind.APP


def test_vercel_helpers_are_non_entry_files_everywhere(vercel):
    helpers = {h.id: h for h in vercel.helpers}
    assert set(helpers) == {"api/_utils.py", "api/lib_helpers.py", "lib/__init__.py", "lib/db.py", "lib/models.py"}
    assert helpers["api/_utils.py"].module == "api._utils"
    assert helpers["api/_utils.py"].importers == ("api/hello.py",)
    assert helpers["lib/models.py"].importers == ("api/users/[id].py",)
    assert helpers["api/lib_helpers.py"].importers == ()


def test_vercel_bracket_syntax_matching(vercel):
    match = vercel.routes.match
    assert match("/api/users/42").params == {"id": "42"}
    assert match("/api/users/42/more") is None  # [id] is exactly one segment
    assert match("/api/posts/hello-world/comments").params == {"slug": "hello-world"}
    assert match("/api/files/a").params == {"path": "a"}
    assert match("/api/files/a/b/c.txt").params == {"path": "a/b/c.txt"}
    assert match("/api/files") is None  # [...path] needs one or more segments
    assert match("/api/docs").params == {"slug": ""}  # [[...slug]]: zero or more
    assert match("/api/docs/") .params == {"slug": ""}
    assert match("/api/docs/guide/intro").params == {"slug": "guide/intro"}


def test_vercel_index_and_alias(vercel):
    assert vercel.routes.match("/api").function.id == "api/index.py"
    assert vercel.routes.match("/api/users").function.id == "api/users/index.py"
    alias = vercel.routes.match("/api/hello.py")
    assert alias.route.alias and alias.function.id == "api/hello.py"


def test_vercel_framework_app_sees_full_path(vercel):
    hit = vercel.routes.match("/api/flask_app/hello/ada")
    assert hit.function.id == "api/flask_app.py"
    assert (hit.root_path, hit.path) == ("", "/api/flask_app/hello/ada")


def test_edgeone_layout_routes(edgeone):
    patterns = {(r.pattern, r.function.id, r.mount) for r in edgeone.routes.routes}
    assert patterns == {
        ("/", "cloud-functions/index.py", False),
        ("/api", "cloud-functions/api/index.py", True),
        ("/api/hello", "cloud-functions/api/hello.py", True),  # EdgeOne: any kind at a static route
        ("/api/users/list", "cloud-functions/api/users/list.py", True),
        ("/api/users/[id]", "cloud-functions/api/users/[id].py", False),
        ("/api/[[default]]", "cloud-functions/api/[[default]].py", False),
    }
    assert not any(r.alias for r in edgeone.routes.routes)  # the .py alias is Vercel's


def test_edgeone_modules_are_relative_to_cloud_functions(edgeone):
    fn = edgeone.function("cloud-functions/api/users/[id].py")
    assert fn.module == "api.users.[id]"
    assert fn.layout is Layout.EDGEONE
    assert fn.import_roots == (edgeone.root, edgeone.root / "cloud-functions")
    assert edgeone.function("cloud-functions/index.py").module == "index"
    store = next(h for h in edgeone.helpers if h.id == "cloud-functions/shared/store.py")
    assert store.module == "shared.store"
    assert store.importers == ("cloud-functions/api/index.py",)


def test_edgeone_matching_and_mount_prefix(edgeone):
    match = edgeone.routes.match
    assert match("/").function.id == "cloud-functions/index.py"
    assert match("/api/users/list").function.id == "cloud-functions/api/users/list.py"  # static beats [id]
    assert match("/api/users/1024").params == {"id": "1024"}
    assert match("/api/books/list").params == {"default": "books/list"}  # [[default]]: zero or more
    assert match("/api/1024").params == {"default": "1024"}
    assert match("/v2/vip/1024") is None
    flask = match("/api")
    assert flask.function.id == "cloud-functions/api/index.py" and flask.root_path == "/api"
    assert match("/api/hello").root_path == ""  # handlers always see the full path


def test_edgeone_exact_catchall_beats_mount(edgeone):
    # /api/users is not a route of its own: [[default]] (exact) beats the Flask mount at /api
    hit = edgeone.routes.match("/api/users")
    assert hit.function.id == "cloud-functions/api/[[default]].py"
    assert hit.params == {"default": "users"}


def test_catchall_not_last_is_reported(tmp_path):
    folder = tmp_path / "api" / "[...path]"
    folder.mkdir(parents=True)
    (folder / "edit.py").write_text("def handler(event, context):\n    return {}\n")
    (tmp_path / "api" / "ok.py").write_text("def handler(event, context):\n    return {}\n")
    project = load_project(tmp_path)
    assert [r.pattern for r in project.routes.routes if not r.alias] == ["/api/ok"]
    problem = next(p for p in project.problems if p.file == "api/[...path]/edit.py")
    assert problem.severity == "error" and "must be the last" in problem.message


def test_both_layouts_in_one_project(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "cloud-functions" / "edge").mkdir(parents=True)
    (tmp_path / "api" / "hello.py").write_text("def handler(event, context):\n    return {}\n")
    (tmp_path / "cloud-functions" / "edge" / "hello.py").write_text("def handler(event, context):\n    return {}\n")
    project = load_project(tmp_path)
    assert project.routes.match("/api/hello").function.layout is Layout.VERCEL
    assert project.routes.match("/edge/hello").function.layout is Layout.EDGEONE


def test_lambda_handlers_are_exact_routes_not_mounts():
    project = load_project(PROJECTS / "lambda")
    for file in ("api/event.py", "api/mangum_app.py"):
        fn = project.function(file)
        assert fn.entry.kind is EntryKind.LAMBDA
    route = project.routes.match("/api/mangum_app").route
    assert not route.mount
    assert project.routes.match("/api/mangum_app/sub") is None


def test_vercel_index_also_answers_index_path(vercel):
    # SPEC §3.1: api/index.py answers /api, /api/index and /api/index.py (Vercel serves all three)
    for path in ("/api", "/api/", "/api/index", "/api/index/", "/api/index.py"):
        assert vercel.routes.match(path).function.id == "api/index.py", path
    assert vercel.routes.match("/api/users/index").function.id == "api/users/index.py"
    assert vercel.routes.match("/api/index/more") is None  # a handler's alias is exact


def test_vercel_index_alias_yields_to_a_real_route(tmp_path):
    (tmp_path / "api" / "index").mkdir(parents=True)
    source = "def handler(event, context):\n    return {}\n"
    (tmp_path / "api" / "index.py").write_text(source)
    (tmp_path / "api" / "index" / "index.py").write_text(source)  # the file that names /api/index
    project = load_project(tmp_path)
    assert project.routes.match("/api/index").function.id == "api/index/index.py"
    assert project.routes.match("/api").function.id == "api/index.py"


def test_edgeone_optional_catchall_matches_its_bare_prefix(tmp_path):
    # SPEC §3.1: EdgeOne's [[default]] is zero or more segments (route ^/api(?:/(.*))?$)
    folder = tmp_path / "cloud-functions" / "api"
    folder.mkdir(parents=True)
    (folder / "[[default]].py").write_text("def handler(event, context):\n    return {}\n")
    match = load_project(tmp_path).routes.match
    for path, rest in (("/api", ""), ("/api/", ""), ("/api/a", "a"), ("/api/a/b/", "a/b")):
        hit = match(path)
        assert hit is not None and hit.params == {"default": rest}, path
    assert match("/apix") is None


def test_edgeone_static_routes_take_sub_paths_of_any_kind(edgeone):
    # SPEC §3.1: demo.py answers /demo/health, unless a more specific route matches (§3.2)
    hit = edgeone.routes.match("/api/hello/health")
    assert hit.function.id == "cloud-functions/api/hello.py" and hit.route.mount
    assert hit.root_path == ""  # a handler sees the full path (§3.4)
    assert edgeone.routes.match("/api/users/list/x/y").function.id == "cloud-functions/api/users/list.py"
    assert edgeone.routes.match("/api/users/7").function.id == "cloud-functions/api/users/[id].py"
    # the root index.py is not a catch-all: EdgeOne's route for it is ^/(?:/.*)?$
    assert edgeone.routes.match("/").function.id == "cloud-functions/index.py"
    assert not edgeone.routes.match("/").route.mount


def test_edgeone_mount_keeps_its_own_path_next_to_optional_catchall(edgeone):
    # /api: the Flask app at api/index.py (as on EdgeOne: exact before catch-all); /api/x: [[default]]
    assert edgeone.routes.match("/api").function.id == "cloud-functions/api/index.py"
    assert edgeone.routes.match("/api/").function.id == "cloud-functions/api/index.py"
    assert edgeone.routes.match("/api/x").function.id == "cloud-functions/api/[[default]].py"
    warning = next(p for p in edgeone.problems if p.file == "cloud-functions/api/[[default]].py")
    assert "never receives /api" in warning.message


def test_edgeone_handler_at_root_without_other_routes(tmp_path):
    folder = tmp_path / "cloud-functions"
    folder.mkdir()
    (folder / "index.py").write_text("def handler(event, context):\n    return {}\n")
    match = load_project(tmp_path).routes.match
    assert match("/") is not None
    assert match("/nothing") is None
