"""Django static files inside the function's own environment (SPEC §4 "Django"; issue 9 item 4).

Runs where Django is installed (the function's env and Python, 3.9–3.13); stdlib only at import:
Django is reached only through ``importlib`` once the loaded project imported it.

- ``wrap(app, spec)``: the loader's hook. ``spec["django_static"]``:

  * ``"finders"`` (``fnserve dev``): when the loaded project is Django with
    ``django.contrib.staticfiles`` installed and a local ``STATIC_URL``, GET/HEAD requests under
    ``STATIC_URL`` are answered from Django's static finders (``finders.find``: app ``static/``
    folders, ``STATICFILES_DIRS``, custom finders), as ``runserver`` does; a file not found goes on
    to the app (its 404). Other requests go to the app unchanged;
  * ``"collected"`` (``fnserve start``): ``STATIC_ROOT`` is set to ``spec["django_static_root"]``,
    the folder ``collectstatic`` filled (the front serves it), so manifest storages
    (``ManifestStaticFilesStorage``, WhiteNoise) find their manifest;
  * anything else: the app is returned unchanged.

  A project without ``django.contrib.staticfiles`` is left alone.
- ``main(argv)``: run by the front as a subprocess in the function's env, cwd the project root
  (``fnserve.server.collectstatic``). ``["probe", SPEC_JSON]`` imports the function as a worker
  would and prints ``STATIC_URL``; ``["collect", SPEC_JSON, DEST]`` also runs ``collectstatic``
  with ``STATIC_ROOT = DEST`` (never the project's own ``STATIC_ROOT``). The result is one line
  ``FNSERVE-DJANGO-STATIC {"static_url": "/static/" | null}`` on stdout; exit 1 with the error on
  stderr when the import or ``collectstatic`` fails.
"""

import asyncio
import importlib
import json
import mimetypes
import os
import sys
from email.utils import formatdate
from typing import Any, Dict, List, Optional

from .asgitypes import Receive, Scope, Send

RESULT_PREFIX = "FNSERVE-DJANGO-STATIC "
CHUNK = 64 * 1024


def static_url() -> Optional[str]:
    """The local ``STATIC_URL`` path (``"/static/"``) when the process runs a configured Django
    project with ``django.contrib.staticfiles``; None otherwise (no Django, not configured, the app
    not installed, or ``STATIC_URL`` on another host)."""
    conf = sys.modules.get("django.conf")
    if conf is None:
        return None
    settings: Any = getattr(conf, "settings", None)
    try:
        if settings is None or not settings.configured:
            return None
        apps = [str(a) for a in settings.INSTALLED_APPS]
        url = settings.STATIC_URL
    except Exception:  # a settings module that fails is the app's problem, reported when it runs
        return None
    if not any(a == "django.contrib.staticfiles" or a.startswith("django.contrib.staticfiles.") for a in apps):
        return None
    if not url or "://" in str(url) or str(url).startswith("//"):
        return None
    url = "/" + str(url).lstrip("/")
    return url if url.endswith("/") else url + "/"


def wrap(app: Any, spec: Dict[str, Any]) -> Any:
    """The loader's hook (module docstring): ``app`` (the adapter, an ASGI 3 app with
    ``startup``/``shutdown``) wrapped for ``spec["django_static"]``, or ``app`` itself."""
    mode = spec.get("django_static")
    if mode not in ("finders", "collected"):
        return app
    url = static_url()
    if url is None:
        return app
    if mode == "collected":
        root = spec.get("django_static_root")
        if root:
            settings: Any = sys.modules["django.conf"].settings
            settings.STATIC_ROOT = str(root)
        return app
    return FindersApp(app, url)


class FindersApp:
    """ASGI 3 app: GET/HEAD under ``static_url`` from Django's finders, everything else (and
    files not found) to ``app``. Attributes of ``app`` (``startup``, ``shutdown``) pass through."""

    def __init__(self, app: Any, static_url: str) -> None:
        self.app = app
        self.static_url = static_url

    def __getattr__(self, name: str) -> Any:
        return getattr(self.app, name)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") == "http" and scope.get("method") in ("GET", "HEAD"):
            path = str(scope.get("path") or "/")
            root = str(scope.get("root_path") or "")
            if root and path.startswith(root + "/"):
                path = path[len(root):]
            if path.startswith(self.static_url):
                found = await asyncio.get_running_loop().run_in_executor(None, _find, path[len(self.static_url):])
                if found is not None:
                    await _send_file(scope, send, found)
                    return
        await self.app(scope, receive, send)


def _find(relative: str) -> Optional[str]:
    """``finders.find(relative)`` as a file path, or None (not found, traversal refused)."""
    if not relative or "\x00" in relative or any(p in ("", ".", "..") for p in relative.split("/")):
        return None
    try:
        found = importlib.import_module("django.contrib.staticfiles.finders").find(relative)
    except Exception:  # SuspiciousFileOperation for a path leaving a static folder, and the like
        return None
    if isinstance(found, (list, tuple)):
        found = found[0] if found else None
    return str(found) if found and os.path.isfile(str(found)) else None


async def _send_file(scope: Scope, send: Send, path: str) -> None:
    loop = asyncio.get_running_loop()
    ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/javascript", "application/json", "image/svg+xml"):
        ctype += "; charset=utf-8"
    with open(path, "rb") as handle:
        st = os.fstat(handle.fileno())
        headers = [
            (b"content-type", ctype.encode("latin-1")),
            (b"content-length", str(st.st_size).encode()),
            (b"last-modified", formatdate(st.st_mtime, usegmt=True).encode()),
            (b"cache-control", b"no-cache"),
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        if scope.get("method") == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        while True:
            chunk = await loop.run_in_executor(None, handle.read, CHUNK)
            if not chunk:
                break
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


def main(argv: List[str]) -> int:
    """``probe SPEC_JSON`` or ``collect SPEC_JSON DEST`` (module docstring). Returns the exit code."""
    from .loader import import_entry

    if len(argv) < 2 or argv[0] not in ("probe", "collect") or (argv[0] == "collect" and len(argv) < 3):
        sys.stderr.write("usage: probe SPEC_JSON | collect SPEC_JSON DEST\n")
        return 2
    spec = json.loads(argv[1])
    try:
        import_entry(spec)
        if static_url() is None and os.environ.get("DJANGO_SETTINGS_MODULE") and "django" in sys.modules:
            importlib.import_module("django").setup()
        url = static_url()
        if url is not None and argv[0] == "collect":
            importlib.import_module("django.conf").settings.STATIC_ROOT = argv[2]
            management = importlib.import_module("django.core.management")
            management.call_command("collectstatic", interactive=False, verbosity=0)
    except Exception as exc:
        detail = getattr(exc, "traceback", None) or "%s: %s" % (type(exc).__name__, exc)
        sys.stderr.write(str(detail) + "\n")
        return 1
    sys.stdout.write(RESULT_PREFIX + json.dumps({"static_url": url}) + "\n")
    sys.stdout.flush()
    return 0
