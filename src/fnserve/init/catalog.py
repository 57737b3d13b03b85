"""The templates ``fnserve init`` knows: a name map of :class:`Template` (issue 13 item 1).

Each template's files live in ``templates/<name>/`` (package data, every file ending ``.tmpl``),
plus the files every template shares in ``templates/_common/`` (README, requirements.txt,
public/index.html, .gitignore). ``fnserve.init.scaffold`` renders them for a layout.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["LAYOUTS", "TEMPLATES", "Probe", "Template"]

LAYOUTS = ("vercel", "edgeone")
"""``vercel``: functions in ``api/``; ``edgeone``: functions in ``cloud-functions/``."""


@dataclass(frozen=True)
class Probe:
    """A URL ``path`` of a fresh project whose 200 answer is a JSON object with ``field`` equal
    to ``value`` (linked from the project's index page and README; requested by the tests under
    ``fnserve dev`` and ``fnserve start``)."""

    path: str
    field: str
    value: str


@dataclass(frozen=True)
class Template:
    """One template: ``name`` (its folder under ``templates/``), ``summary`` (one line for
    ``fnserve init --list``), ``about`` (the README's first paragraph), ``requirements``
    (requirements.txt lines), ``layouts`` (the layouts it can be written in; the first is the
    default) and ``probes`` (what a fresh project answers)."""

    name: str
    summary: str
    about: str
    requirements: tuple[str, ...]
    probes: tuple[Probe, ...]
    layouts: tuple[str, ...] = LAYOUTS


_ITEMS = (Probe("/api/items/42", "id", "42"),)

TEMPLATES: Mapping[str, Template] = {t.name: t for t in (
    Template("handler", "Handler classes (BaseHTTPRequestHandler), no dependencies",
             "Two functions written as `handler` classes (Python's `http.server` API, as on Vercel): "
             "a static route and a dynamic one (`[id]`).", (),
             (Probe("/api/hello?name=fnserve", "message", "Hello, fnserve!"), *_ITEMS)),
    Template("flask", "One Flask app serving /api and everything below it",
             "A Flask app in the functions folder's `index.py`: a framework app at a static route "
             "receives every path below it.", ("flask>=3",),
             (Probe("/api/hello", "kind", "flask"), *_ITEMS)),
    Template("fastapi", "One FastAPI app serving /api and everything below it",
             "A FastAPI (ASGI) app in the functions folder's `index.py`, serving every path below `/api`.",
             ("fastapi>=0.110",), (Probe("/api/hello", "kind", "fastapi"), *_ITEMS)),
    Template("django", "A Django project (no database) serving /api",
             "A minimal Django project (`mysite/`: settings and URLs, no database) whose WSGI "
             "application serves every path below `/api`.", ("django>=4.2",),
             (Probe("/api/hello", "kind", "django"), *_ITEMS)),
    Template("sanic", "One Sanic app serving /api and everything below it",
             "A Sanic (ASGI) app in the functions folder's `index.py`, serving every path below `/api`.",
             ("sanic>=23",), (Probe("/api/hello", "kind", "sanic"), *_ITEMS)),
    Template("mixed", "Handlers, Flask and FastAPI side by side, a dynamic route and a catch-all",
             "Several kinds of function side by side, each in its own worker: a handler class, a Flask "
             "app and a FastAPI app (mounts), a dynamic route (`users/[id]`) and a catch-all (`files/...`).",
             ("flask>=3", "fastapi>=0.110"),
             (Probe("/api/hello", "message", "Hello from a handler"), Probe("/api/users/7", "user", "7"),
              Probe("/api/files/docs/guide.txt", "path", "docs/guide.txt"),
              Probe("/api/flaskapp/ping", "message", "pong from Flask"), Probe("/api/fast/ping", "message", "pong from FastAPI"))),
)}
"""Every template by name, in the order ``fnserve init --list`` shows them."""
