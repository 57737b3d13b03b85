"""Django static files, the front's side (SPEC §4 "Django"; issue 9 item 4).

Django code runs only in the function's own environment: this module starts
``runtime/djangostatic.py`` there as a subprocess (``python -I``, the worker's environment and
working directory, the runtime package loaded under its private name as a worker loads it).

Which functions: those whose file, or a project module it imports (transitively), imports
``django`` (one ``ast`` scan; a project without Django starts no process). Among them, only a
project with ``django.contrib.staticfiles`` and a local ``STATIC_URL`` gets static files.

- ``fnserve dev`` (Django's finders, files seen as soon as they are saved): ``probe`` learns each
  Django function's ``STATIC_URL``; ``StaticRoutes`` sends requests under it to that function
  (whatever the route table says), whose worker answers them from Django's finders
  (``spec["django_static"] = "finders"``, ``runtime.djangostatic.FindersApp``); a file the finders
  do not have goes on to Django (its 404).
- ``fnserve start``: ``collect`` runs ``collectstatic`` with ``STATIC_ROOT`` overridden to a fresh
  folder under ``.fnserve/django-static/`` (never the project's ``STATIC_ROOT``), laid out by URL
  path (``<folder>/static/app/style.css``), served by the front like ``public/`` (after it: a
  ``public/`` file of the same path wins); the workers get that ``STATIC_ROOT`` too
  (``"collected"``), so manifest storages find their manifest.
- ``fnserve build``: the same ``collect`` into the output's ``static/`` (``place_collected``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from fnserve.errors import ProjectError
from fnserve.project.importscan import scan_imports
from fnserve.project.types import Function, RouteMatch
from fnserve.supervisor.launch import PRIVATE_NAME, RUNTIME_DIR
from fnserve.supervisor.target import WorkerTarget

RESULT_PREFIX = "FNSERVE-DJANGO-STATIC "  # runtime.djangostatic.RESULT_PREFIX
STATE_FOLDER = "django-static"
_BOOTSTRAP = (
    "import importlib.util as u,sys\n"
    "d=sys.argv[1];n=%r\n"
    "s=u.spec_from_file_location(n,d+'/__init__.py',submodule_search_locations=[d])\n"
    "m=u.module_from_spec(s);sys.modules[n]=m;s.loader.exec_module(m)\n"
    "from _fnserve_runtime.djangostatic import main\n"
    "sys.exit(main(sys.argv[2:]))\n"
) % PRIVATE_NAME


def django_functions(project: Any) -> tuple[Function, ...]:
    """The functions of ``project`` (a ``Project``) that import ``django``, in their file or in a
    project module they import (transitively). Functions with a syntax error are left out."""
    helper_files: dict[str, list[Path]] = {}
    for helper in project.helpers:
        for fid in helper.importers:
            helper_files.setdefault(fid, []).append(helper.path)
    found = []
    for function in project.functions:
        if function.entry is None:
            continue
        files = [function.path, *helper_files.get(function.id, ())]
        if any(ref.top == "django" for path in files for ref in scan_imports(path, path.name).imports):
            found.append(function)
    return tuple(found)


def run_django_static(target: WorkerTarget, dest: Path | None, *, timeout: float = 300) -> str | None:
    """Run ``runtime.djangostatic`` for ``target`` in its env: ``probe`` (``dest`` None) or
    ``collect`` into ``dest``. Returns the ``STATIC_URL`` path (``"/static/"``) or None when the
    project has no ``django.contrib.staticfiles``. Raises ``ProjectError`` naming the function
    with the error output when the import or ``collectstatic`` fails."""
    args = ["probe", json.dumps(dict(target.spec))] if dest is None else ["collect", json.dumps(dict(target.spec)),
                                                                          str(dest)]
    what = "collectstatic" if dest is not None else "loading Django settings"
    try:
        proc = subprocess.run([str(target.python), "-I", "-B", "-c", _BOOTSTRAP, str(RUNTIME_DIR), *args],
                              capture_output=True, text=True, env=dict(target.env),
                              cwd=str(target.cwd) if target.cwd else None, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError) as exc:
        raise ProjectError(f"{target.id}: {what} could not run: {exc}", "check the function's environment") from exc
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr.strip() or proc.stdout.strip()).splitlines()[-15:])
        raise ProjectError(f"{target.id}: Django {what} failed:\n{tail}",
                           "fix the error (`python manage.py collectstatic` shows it too), or remove "
                           "django.contrib.staticfiles from INSTALLED_APPS")
    url = json.loads(lines[-1][len(RESULT_PREFIX):]).get("static_url")
    return str(url) if url else None


@dataclass(frozen=True)
class CollectedStatic:
    """The result of ``collect``: ``root``, a folder laid out by URL path (served at ``/``);
    ``static_roots``: function id → its ``STATIC_ROOT`` (``root`` + ``STATIC_URL``)."""

    root: Path
    static_roots: Mapping[str, Path]


def collect(targets: Mapping[str, WorkerTarget], functions: Iterable[Function], state_dir: Path,
            *, keep: Path | None = None) -> CollectedStatic | None:
    """``collectstatic`` for each Django function into a new ``state_dir/django-static/<n>/``
    (older ones removed, except ``keep``: the folder still served). None when no function has
    static files. Raises ``ProjectError`` (the new folder removed)."""
    base = state_dir / STATE_FOLDER
    base.mkdir(parents=True, exist_ok=True)
    root = base / f"{time.time_ns():x}"
    roots: dict[str, Path] = {}
    try:
        for function in functions:
            target = targets.get(function.id)
            if target is None:
                continue
            scratch = root.with_name(root.name + ".tmp")
            url = run_django_static(target, scratch)
            if url is not None:
                roots[function.id] = place_collected(scratch, root, url)
            shutil.rmtree(scratch, ignore_errors=True)
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(root.with_name(root.name + ".tmp"), ignore_errors=True)
        raise
    for old in base.iterdir():
        if old != root and old != keep:
            shutil.rmtree(old, ignore_errors=True)
    return CollectedStatic(root, roots) if roots else None


def collect_for_build(project: Any, python: Path | None, env: Mapping[str, str], static_dir: Path,
                      scratch: Path) -> list[str]:
    """``fnserve build``: ``collectstatic`` of ``project``'s (the work copy's) Django functions
    with ``python`` (the env's; None: fnserve's) and ``env`` (the function environment), placed
    under ``static_dir`` by URL path (a ``public/`` file of the same path wins). ``scratch``: an
    empty folder outside the work copy. Returns the ``STATIC_URL`` paths. Raises ``ProjectError``."""
    urls = []
    for function in django_functions(project):
        target = WorkerTarget.from_function(function, project.root, python=python, env=env)
        folder = scratch / function.id.replace("/", "_")
        url = run_django_static(target, folder)
        if url is not None:
            place_collected(folder, static_dir, url)
            urls.append(url)
        shutil.rmtree(folder, ignore_errors=True)
    return urls


def place_collected(collected: Path, static_dir: Path, static_url: str) -> Path:
    """Move the files of ``collected`` under ``static_dir`` + ``static_url``'s path; a file already
    there (``public/``'s) is kept. Returns that folder."""
    dest = static_dir.joinpath(*[p for p in static_url.split("/") if p])
    if not collected.is_dir():
        dest.mkdir(parents=True, exist_ok=True)
        return dest
    for src in sorted(collected.rglob("*")):
        target = dest / src.relative_to(collected)
        if src.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        elif not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(src), target)
    return dest


def with_django_static(target: WorkerTarget, mode: str, static_root: Path | None = None) -> WorkerTarget:
    """``target`` whose spec tells the runtime what to do (``runtime.djangostatic.wrap``)."""
    spec = {**target.spec, "django_static": mode}
    if static_root is not None:
        spec["django_static_root"] = str(static_root)
    return replace(target, spec=spec)


_ASSET_SUFFIXES = frozenset({".css", ".js", ".mjs", ".map", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".ico",
                             ".webp", ".avif", ".woff", ".woff2", ".ttf", ".otf", ".eot"})


def django_static_hint(path: str, prefixes: Mapping[str, str]) -> str | None:
    """The detail of ``fnserve dev``'s 404 for ``path`` in a project with Django functions:
    ``prefixes`` is ``STATIC_URL`` → function id (what ``probe`` learnt; empty when no Django
    function has ``django.contrib.staticfiles`` and a local ``STATIC_URL``). None unless
    ``path`` looks like a static file (an asset suffix, or under ``/static/``)."""
    name = path.rsplit("/", 1)[-1]
    if not path.startswith("/static/") and Path(name).suffix.lower() not in _ASSET_SUFFIXES:
        return None
    if prefixes:
        shown = ", ".join(f"{url} ({fid})" for url, fid in prefixes.items())
        return (f"Django serves its static files under STATIC_URL {shown}, and {path} is not under it: "
                "check STATIC_URL in settings and the URLs your templates build with {% static %}")
    return ("this looks like a Django static file, but no Django function serves static files: add "
            "'django.contrib.staticfiles' to INSTALLED_APPS and set a local STATIC_URL (e.g. STATIC_URL = "
            "'static/'); or put the file under public/")


class StaticRoutes:
    """``fnserve dev``'s route table with each Django ``STATIC_URL`` sent to its function.
    ``table``: the project's ``RouteTable``; ``prefixes``: ``STATIC_URL`` path → function id.
    Has the table's ``match(path)`` and ``routes``."""

    def __init__(self, table: Any, prefixes: Mapping[str, str]) -> None:
        self.table = table
        self.routes = table.routes
        self.prefixes = sorted(prefixes.items(), key=lambda item: -len(item[0]))
        self._route_of = {fid: next((r for r in table.routes if r.function.id == fid), None)
                          for fid in prefixes.values()}

    def match(self, path: str) -> RouteMatch | None:
        found: RouteMatch | None = self.table.match(path)
        for prefix, fid in self.prefixes:
            if path.startswith(prefix):
                route = self._route_of.get(fid)
                if route is not None and (found is None or found.function.id != fid):
                    return RouteMatch(route, {}, "", path)
                break
        return found
