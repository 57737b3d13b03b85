"""The zero-config single app (SPEC §3.3): when it applies, the four steps, the error."""

from __future__ import annotations

from pathlib import Path

import pytest

from fnserve.errors import NoEntrypointError
from fnserve.project import EntryKind, Layout, load_project

PROJECTS = Path(__file__).parents[1] / "projects"


def the_app(project):
    assert project.zero_config
    assert len(project.functions) == 1
    fn = project.functions[0]
    assert fn.layout is Layout.APP
    (route,) = project.routes.routes
    assert (route.pattern, route.segments, route.mount) == ("/", (), True)
    hit = project.routes.match("/any/deep/path")
    assert hit.function is fn and hit.root_path == "" and hit.path == "/any/deep/path"
    return fn


def test_step1_configured_entrypoint_wins_over_candidates():
    root = PROJECTS / "zc_configured"
    fn = the_app(load_project(root, entrypoint="service.web:server"))
    assert (fn.id, fn.module, fn.entry.attr, fn.entry.kind) == ("service/web.py", "service.web", "server", EntryKind.APP)
    assert fn.import_roots == (root.resolve(),)


def test_without_configuration_the_same_project_uses_step3():
    fn = the_app(load_project(PROJECTS / "zc_configured"))
    assert (fn.id, fn.entry.attr) == ("app.py", "app")


def test_step1_configured_entrypoint_not_found(tmp_path):
    (tmp_path / "app.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    with pytest.raises(NoEntrypointError, match="web:server"):
        load_project(tmp_path, entrypoint="web:server")
    with pytest.raises(NoEntrypointError, match="app:missing"):
        load_project(tmp_path, entrypoint="app:missing")


def test_step2_django_wsgi_application():
    root = (PROJECTS / "zc_django").resolve()
    fn = the_app(load_project(root))
    assert (fn.id, fn.module, fn.entry.kind, fn.entry.attr) == ("mysite/wsgi.py", "mysite.wsgi", EntryKind.APPLICATION, "application")
    assert fn.import_roots == (root,)


def test_step2_django_in_first_level_folder_prefers_asgi_application():
    root = (PROJECTS / "zc_django_asgi").resolve()
    fn = the_app(load_project(root))
    assert (fn.id, fn.module, fn.entry.attr) == ("backend/config/asgi.py", "config.asgi", "application")
    assert fn.import_roots == (root, root / "backend")


def test_step3_first_candidate_exporting_an_entry():
    root = (PROJECTS / "zc_candidates").resolve()
    project = load_project(root)
    fn = the_app(project)
    # app.py exists but only defines create_app(): skipped; src/main.py exports app
    assert (fn.id, fn.module, fn.import_roots) == ("src/main.py", "main", (root, root / "src"))
    assert project.dependents(root / "src" / "routers" / "items.py") == {"src/main.py"}


@pytest.mark.parametrize("folder, name", [("", "index.py"), ("app", "server.py"), ("api", "asgi.py"), ("src", "wsgi.py")])
def test_step3_candidate_folders_and_names(tmp_path, folder, name):
    (tmp_path / folder).mkdir(exist_ok=True)
    (tmp_path / folder / name).write_text("def app(environ, start_response):\n    return [b'ok']\n")
    if folder == "api":  # an entrypoint under api/ is a route unless a preset forces the single app
        fn = the_app(load_project(tmp_path, framework="python"))
    else:
        fn = the_app(load_project(tmp_path))
    assert fn.id == f"{folder}/{name}".lstrip("/")


def test_step3_order_root_before_src(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "app.py").write_text("app = object()\n")
    (tmp_path / "main.py").write_text("app = object()\n")
    assert the_app(load_project(tmp_path)).id == "main.py"


def test_step4_project_scripts_app_with_any_attribute():
    fn = the_app(load_project(PROJECTS / "zc_scripts"))
    assert (fn.id, fn.module, fn.entry.attr, fn.entry.kind) == ("pkg/mod.py", "pkg.mod", "test", EntryKind.APP)


def test_nothing_found_lists_candidates_and_says_how_to_name_one():
    with pytest.raises(NoEntrypointError) as info:
        load_project(PROJECTS / "zc_nothing")
    err = info.value
    assert err.candidates == ("app.py (defines Flask, create_app)", "src/server.py (defines PORT)")
    assert "app.py (defines Flask, create_app)" in str(err)
    assert "`app`" in err.hint and "entrypoint" in err.hint


def test_empty_project_is_an_error_but_public_only_is_served(tmp_path):
    with pytest.raises(NoEntrypointError):
        load_project(tmp_path)
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("<h1>hi</h1>")
    project = load_project(tmp_path)
    assert project.functions == () and len(project.routes) == 0 and not project.zero_config
    assert any("public/ only" in p.message for p in project.problems)


@pytest.mark.parametrize("framework", ["fasthtml", "FastAPI", "python"])
def test_python_framework_preset_forces_the_single_app(framework):
    fn = the_app(load_project(PROJECTS / "fasthtml", framework=framework))
    assert (fn.id, fn.module) == ("api/index.py", "api.index")


def test_without_preset_the_same_file_is_a_route():
    project = load_project(PROJECTS / "fasthtml")
    assert not project.zero_config
    hit = project.routes.match("/api/anything")
    assert hit.function.layout is Layout.VERCEL and hit.route.pattern == "/api"


def test_non_python_framework_is_ignored():
    project = load_project(PROJECTS / "fasthtml", framework="nextjs")
    assert not project.zero_config


def test_function_roots_without_entrypoints_fall_back_to_zero_config(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "utils.py").write_text("def helper():\n    return 1\n")
    (tmp_path / "main.py").write_text("from fastapi import FastAPI\napp = FastAPI()\n")
    fn = the_app(load_project(tmp_path))
    assert fn.id == "main.py"


def test_broken_candidate_becomes_the_app_with_its_error(tmp_path):
    (tmp_path / "app.py").write_text("from flask import Flask\napp = Flask(__name__\n")
    project = load_project(tmp_path)
    fn = the_app(project)
    assert fn.entry is None and fn.error.line is not None
    assert project.has_errors
