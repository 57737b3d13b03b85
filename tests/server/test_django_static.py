"""Issue 9 item 4: a Django project's ``STATIC_URL`` is served with nothing to configure (SPEC §4
"Django"): Django's finders in ``fnserve dev``, ``collectstatic`` output under ``.fnserve/`` in
``fnserve start`` and in ``fnserve build``'s ``static/``; never a write into the project.

(``fnserve build``: tests/build/test_build_django_static.py.) ``--no-install``: fnserve's own interpreter has Django (the test extra), so no env is built.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from devserver import DevServer
from startserver import StartServer

pytest.importorskip("django")

CASES = ["django_static", "django_static_api"]


def _check_served(c: httpx.Client) -> None:
    css = c.get("/static/shop/style.css")  # an app's static/ folder
    assert css.status_code == 200 and css.text == "body { color: red }\n"
    assert css.headers["content-type"].startswith("text/css")
    js = c.get("/static/site.js")  # STATICFILES_DIRS
    assert js.status_code == 200 and "console.log" in js.text
    assert c.head("/static/site.js").headers["content-length"] == str(len(js.content))
    assert c.get("/static/missing.css").status_code == 404
    assert c.get("/static/../mysite/settings.py").status_code == 404


def _never_written(project: Path) -> None:
    assert not (project / "staticfiles").exists()  # the project's STATIC_ROOT is never used


@pytest.mark.parametrize("case", CASES)
def test_dev_serves_static_url_from_djangos_finders(tmp_path, case) -> None:
    server = DevServer(case, tmp_path, "--no-install")
    server.start(timeout=60)
    try:
        c = httpx.Client(base_url=server.url, timeout=30)
        _check_served(c)
        page = c.get("/" if case == "django_static" else "/api/index")
        assert page.status_code == 200 and page.text in ("django home", "django api")
        (server.project / "shop" / "static" / "shop" / "new.css").write_text("p { margin: 0 }\n")
        assert c.get("/static/shop/new.css").text == "p { margin: 0 }\n"  # finders: seen at once
        assert "is served from Django's static finders" in server.output()
        _never_written(server.project)
        assert not (server.project / ".fnserve" / "django-static").exists()  # dev collects nothing
    finally:
        server.stop()


@pytest.mark.parametrize("case", CASES)
def test_start_serves_collectstatic_output_from_dot_fnserve(tmp_path, case) -> None:
    server = StartServer(case, tmp_path)
    server.start(timeout=90)
    try:
        c = httpx.Client(base_url=server.url, timeout=30)
        _check_served(c)
        css = c.get("/static/shop/style.css")
        assert "etag" in css.headers  # served by the front like public/
        assert c.get("/static/shop/style.css", headers={"if-none-match": css.headers["etag"]}).status_code == 304
        collected = list((server.project / ".fnserve" / "django-static").glob("*/static/shop/style.css"))
        assert len(collected) == 1
        _never_written(server.project)
        assert "django: collectstatic into" in server.output()
    finally:
        server.stop()


def test_project_without_staticfiles_is_left_alone(tmp_path) -> None:
    server = DevServer("zc_django", tmp_path, "--no-install")
    server.start(timeout=60)
    try:
        c = httpx.Client(base_url=server.url, timeout=30)
        assert c.get("/").text == "django"
        assert c.get("/static/x.css").status_code == 404  # Django's own answer
        assert "static finders" not in server.output()
    finally:
        server.stop()
    started = StartServer("zc_django", tmp_path / "start")
    started.start(timeout=60)
    try:
        assert httpx.get(started.url + "/static/x.css", timeout=30).status_code == 404
        assert "collectstatic" not in started.output()
        assert not list((started.project / ".fnserve" / "django-static").glob("*/*"))
    finally:
        started.stop()
