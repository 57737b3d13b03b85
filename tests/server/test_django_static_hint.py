"""Issue 13 item 6: in dev, a 404 for what looks like a Django static file says where Django's
``STATIC_URL`` is (or that no Django function serves static files), over a real socket."""

from __future__ import annotations

from pathlib import Path

import httpx
from devserver import DevServer

from fnserve.server.collectstatic import django_static_hint


def test_hint_only_for_static_looking_paths() -> None:
    prefixes = {"/static/": "api/index.py"}
    assert django_static_hint("/api/users", prefixes) is None
    assert django_static_hint("/about", {}) is None
    hint = django_static_hint("/assets/site.css", prefixes)
    assert hint is not None and "STATIC_URL /static/ (api/index.py)" in hint
    none = django_static_hint("/static/app.js", {})
    assert none is not None and "django.contrib.staticfiles" in none and "STATIC_URL" in none


def test_dev_404_outside_static_url_hints_at_it(tmp_path: Path) -> None:
    server = DevServer("django_static_api", tmp_path, "--no-install")
    server.start(timeout=60)
    try:
        server.wait_for_line(r"django: /static/ is served", timeout=60)
        c = httpx.Client(base_url=server.url, timeout=30)
        assert c.get("/static/site.js").status_code == 200
        miss = c.get("/assets/site.js")  # the STATICFILES_DIRS folder's name, not the URL
        assert miss.status_code == 404
        assert "STATIC_URL /static/" in miss.json()["error"]["detail"]
        plain = c.get("/nothing-here")  # not a static-looking path: the usual 404
        assert plain.status_code == 404 and plain.json()["error"].get("detail") is None
    finally:
        server.stop()
