"""load_project as a whole: syntax errors, excluded folders, helpers, the import graph."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from fnserve.project import EXCLUDED_DIRS, iter_python_files, load_project
from fnserve.project.layout import function_roots, is_excluded_dir
from fnserve.project.types import Layout

PROJECTS = Path(__file__).parents[1] / "projects"
HANDLER = "from http.server import BaseHTTPRequestHandler\n\nclass handler(BaseHTTPRequestHandler):\n    def do_GET(self):\n        pass\n"


def test_syntax_error_function_keeps_its_route_with_the_error():
    project = load_project(PROJECTS / "syntax_error")
    broken = project.function("api/broken.py")
    assert broken.entry is None
    assert (broken.error.file, broken.error.line, broken.error.severity) == ("api/broken.py", 5, "error")
    assert "syntax error" in broken.error.message
    assert project.routes.match("/api/broken").function is broken  # served as 500 with the error
    assert project.routes.match("/api/ok").function.entry.methods == ("GET",)
    assert broken.error in project.problems and project.has_errors


def test_syntax_error_function_at_a_static_route_is_a_mount(tmp_path):
    """Its kind is unknown, so paths below it reach it (500 with the error), not a 404; an exact
    route below still wins."""
    (tmp_path / "api" / "shop").mkdir(parents=True)
    (tmp_path / "api" / "index.py").write_text("from flask import Flask\napp = Flask(__name__\n")
    (tmp_path / "api" / "shop" / "cart.py").write_text(HANDLER)
    project = load_project(tmp_path)
    assert project.function("api/index.py").error is not None
    assert project.routes.match("/api/hello").function.id == "api/index.py"
    assert project.routes.match("/api/shop/cart").function.id == "api/shop/cart.py"


def test_syntax_error_in_a_helper_is_a_warning():
    project = load_project(PROJECTS / "syntax_error")
    warning = next(p for p in project.problems if p.file == "api/_helper_broken.py")
    assert warning.severity == "warning" and warning.line == 1
    assert "api/_helper_broken.py" in {h.id for h in project.helpers}


def test_excluded_folders_never_become_routes_and_entrypoints_there_are_warned():
    project = load_project(PROJECTS / "excluded")
    assert {r.function.id for r in project.routes.routes} == {"api/hello.py"}
    warned = {p.file for p in project.problems if p.severity == "warning"}
    assert warned == {"api/tests/test_hello.py", "api/scripts/deploy.py"}  # not node_modules (vendor code)
    assert not any(h.id.startswith(("scripts/", "api/tests/", "api/node_modules/")) for h in project.helpers)


def test_virtualenv_and_dot_folders_inside_the_project_are_not_scanned(tmp_path):
    # built here, not committed: .venv/ and __pycache__/ are gitignored
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "hello.py").write_text(HANDLER)
    for folder in [".venv/lib/python3.11/site-packages/flask", "api/.venv/lib/site-packages/pkg", "venv/lib",
                   "api/__pycache__", "api/.hidden", ".fnserve/output/functions", "api/.pytest_cache"]:
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "app.py").write_text("app = object()\n")
        (tmp_path / folder / "index.py").write_text(HANDLER)
    (tmp_path / "api" / ".secret.py").write_text(HANDLER)
    project = load_project(tmp_path)
    assert {r.pattern for r in project.routes.routes} == {"/api/hello", "/api/hello.py"}
    assert project.helpers == ()  # .secret.py starts with "." : excluded from the walk entirely
    assert project.problems == ()
    assert [p.relative_to(tmp_path).as_posix() for p in iter_python_files(tmp_path)] == ["api/hello.py"]


def test_excluded_dirs_contract():
    assert {"__pycache__", ".git", "node_modules", "venv", ".venv", "scripts", "tests", ".pytest_cache", ".fnserve"} <= EXCLUDED_DIRS
    assert is_excluded_dir(".anything") and is_excluded_dir("node_modules") and not is_excluded_dir("lib")


def test_function_roots(tmp_path):
    assert function_roots(tmp_path) == ()
    (tmp_path / "cloud-functions").mkdir()
    (tmp_path / "api").mkdir()
    assert function_roots(tmp_path) == ((Layout.VERCEL, tmp_path / "api"), (Layout.EDGEONE, tmp_path / "cloud-functions"))


def test_underscore_files_and_folders_are_helpers_even_if_they_export(tmp_path):
    (tmp_path / "api" / "_lib").mkdir(parents=True)
    (tmp_path / "api" / "_lib" / "base.py").write_text(HANDLER)
    (tmp_path / "api" / "_private.py").write_text(HANDLER)
    (tmp_path / "api" / "ok.py").write_text(HANDLER)
    project = load_project(tmp_path)
    assert [f.id for f in project.functions] == ["api/ok.py"]
    assert {h.id for h in project.helpers} == {"api/_lib/base.py", "api/_private.py"}


def test_dependents_follow_absolute_relative_and_transitive_imports():
    project = load_project(PROJECTS / "vercel_routes")
    root = project.root
    assert project.dependents(root / "lib" / "models.py") == {"api/users/[id].py"}  # via lib/db.py (relative)
    assert project.dependents(Path("lib/db.py")) == {"api/users/[id].py"}  # relative to the project root
    assert project.dependents(root / "lib" / "__init__.py") == {"api/users/[id].py"}  # package init runs on import
    assert project.dependents(root / "api" / "_utils.py") == {"api/hello.py"}
    assert project.dependents(root / "api" / "hello.py") == {"api/hello.py"}
    assert project.dependents(root / "api" / "lib_helpers.py") == frozenset()
    assert project.dependents(root / "requirements.txt") == frozenset()


def test_dependents_edgeone_resolve_against_cloud_functions():
    project = load_project(PROJECTS / "edgeone_routes")
    store = project.root / "cloud-functions" / "shared" / "store.py"
    assert project.dependents(store) == {"cloud-functions/api/index.py"}


def test_dependents_follow_sibling_imports_of_an_entry(tmp_path):
    """An entry's own folder is on its ``sys.path`` (after site-packages): ``import _helpers``
    beside ``api/users/[id].py`` is an edge; a module the project root holds wins over it."""
    (tmp_path / "api" / "users").mkdir(parents=True)
    (tmp_path / "api" / "users" / "_helpers.py").write_text("")
    (tmp_path / "api" / "users" / "shared.py").write_text("")
    (tmp_path / "shared.py").write_text("")
    (tmp_path / "api" / "users" / "[id].py").write_text("import _helpers\nimport shared\n" + HANDLER)
    project = load_project(tmp_path)
    assert project.dependents(tmp_path / "api" / "users" / "_helpers.py") == {"api/users/[id].py"}
    assert project.dependents(tmp_path / "shared.py") == {"api/users/[id].py"}
    assert project.dependents(tmp_path / "api" / "users" / "shared.py") == frozenset()


def test_scan_cache_parses_only_changed_files_and_forgets_deleted_ones(tmp_path):
    from fnserve.project.importscan import StampCache

    (tmp_path / "api").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.py").write_text("X = 1\n")
    (tmp_path / "api" / "x.py").write_text(HANDLER)
    (tmp_path / "api" / "y.py").write_text(HANDLER)
    cache: StampCache = StampCache()
    first = load_project(tmp_path, scan_cache=cache)
    assert cache.computed == 3 and first.dependents(tmp_path / "lib" / "a.py") == frozenset()
    (tmp_path / "api" / "y.py").write_text("import lib.a\n" + HANDLER)  # a new size: a new stamp
    (tmp_path / "api" / "x.py").unlink()
    second = load_project(tmp_path, scan_cache=cache)
    assert cache.computed == 4 and len(cache) == 2  # only y.py again; x.py forgotten
    assert second.dependents(tmp_path / "lib" / "a.py") == {"api/y.py"}
    assert [f.id for f in second.functions] == ["api/y.py"]
    load_project(tmp_path, scan_cache=cache)
    assert cache.computed == 4


def test_dependents_handle_import_cycles(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "a.py").write_text("from lib import b\n")
    (tmp_path / "lib" / "b.py").write_text("from lib import a\n")
    (tmp_path / "api" / "x.py").write_text("import lib.a\n" + HANDLER)
    (tmp_path / "api" / "y.py").write_text("from lib.b import something\n" + HANDLER)
    project = load_project(tmp_path)
    assert project.dependents(tmp_path / "lib" / "a.py") == {"api/x.py", "api/y.py"}


def test_project_is_frozen_and_functions_sorted():
    project = load_project(PROJECTS / "vercel_routes")
    with pytest.raises(dataclasses.FrozenInstanceError):
        project.functions = ()  # type: ignore[misc]
    ids = [f.id for f in project.functions]
    assert ids == sorted(ids) and len(ids) == 8


def test_public_file_shadowing_a_route_is_warned(tmp_path):
    shutil.copytree(PROJECTS / "vercel_routes", tmp_path / "p")
    (tmp_path / "p" / "public" / "api").mkdir(parents=True)
    (tmp_path / "p" / "public" / "api" / "hello").write_text("static")
    project = load_project(tmp_path / "p")
    warning = next(p for p in project.problems if "shadowed" in p.message)
    assert "public/api/hello" in warning.message and warning.file == "api/hello.py"


def test_optional_catchall_empty_match_taken_by_index_is_warned(tmp_path):
    (tmp_path / "api" / "docs").mkdir(parents=True)
    (tmp_path / "api" / "docs" / "index.py").write_text(HANDLER)
    (tmp_path / "api" / "docs" / "[[...slug]].py").write_text(HANDLER)
    project = load_project(tmp_path)
    assert project.routes.match("/api/docs").function.id == "api/docs/index.py"
    assert project.routes.match("/api/docs/a").function.id == "api/docs/[[...slug]].py"
    assert any("never receives /api/docs" in p.message for p in project.problems)
