"""Load one function inside its worker process and wrap it as one ASGI 3 application.

Contract (docs/ARCHITECTURE.md "runtime"): ``load_function(spec) -> LoadedFunction``. The worker
has already made the project root the working directory; the loader only touches ``sys.path`` and
``sys.modules`` of its own process (one function per process, so this is not shared state).

Import rules (SPEC §4 last bullet, issue 3):
- ``spec["import_roots"]`` go to the FRONT of ``sys.path`` in order (project root, then
  ``cloud-functions/`` for EdgeOne). Modules the runtime already imported (``json``, ``email``, ...)
  stay the standard library's even if the project has a ``json.py``.
- The entrypoint is imported under its dotted name (``api.users.[id]``) with
  ``importlib.util.spec_from_file_location``; each parent folder becomes a package (its
  ``__init__.py`` if any, else a namespace package) so relative imports work; ``__file__`` is the
  real path. The entry's own folder is APPENDED to ``sys.path`` so ``import sibling`` works without
  ever shadowing an installed package.
- If the dotted name's top level collides with something importable outside the project (a
  ``cloud-functions/flask/`` or ``http/`` folder, EdgeOne layout), the entry is imported under the
  private prefix ``_fnserve_user.`` instead, so ``import flask`` keeps meaning the real Flask.
"""

import importlib.machinery
import importlib.util
import inspect
import os
import sys
import traceback as _traceback
import types
from http.server import BaseHTTPRequestHandler
from typing import Any, Dict, List, Optional, Tuple

# The adapters are imported here, before any user path is on sys.path, so the standard library
# modules they use (json, email, http.client, base64, uuid, ...) are the real ones even when the
# project has a json.py or an email/ folder.
from .asgi import ASGIAdapter
from .awslambda import LambdaAdapter, thread_event_loop
from .djangostatic import wrap as wrap_django_static
from .failures import LoadError
from .handler import HandlerAdapter
from .pool import make_pool
from .wsgi import WSGIAdapter

PRIVATE_PREFIX = "_fnserve_user"
PRECEDENCE = ("app", "application", "handler", "Handler")
# (module prefix, class name) of ASGI framework classes, matched along the MRO without importing.
KNOWN_ASGI = (
    ("fastapi", "FastAPI"),
    ("starlette", "Starlette"),
    ("sanic", "Sanic"),
    ("quart", "Quart"),
    ("litestar", "Litestar"),
    ("django.core.handlers.asgi", "ASGIHandler"),
)
DEFAULT_CONCURRENCY = {"handler": 16, "wsgi": 16, "lambda": 16, "asgi": 100}


class LoadedFunction:
    """A loaded function: ``app`` (ASGI 3 callable), ``kind`` (``"handler" | "wsgi" | "asgi" |
    "lambda"``), ``entry`` (the user's object), ``module`` (the imported module), ``spec``.

    ``await startup()`` before the first request (ASGI lifespan startup; raises ``LoadError`` on
    ``lifespan.startup.failed``); ``await shutdown(timeout)`` when the instance stops: waits up to
    ``timeout`` seconds for in-flight requests (and work after their response), then runs lifespan
    shutdown and releases the thread pool.
    """

    def __init__(self, app: Any, kind: str, entry: Any, module: Any, spec: Dict[str, Any], executor: Any) -> None:
        self.app = app
        self.kind = kind
        self.entry = entry
        self.module = module
        self.spec = spec
        self._executor = executor

    async def startup(self) -> None:
        startup = getattr(self.app, "startup", None)
        if startup is not None:
            await startup()

    async def shutdown(self, timeout: float = 30.0) -> None:
        try:
            await self.app.shutdown(timeout)
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=False)

    def __repr__(self) -> str:
        return "<LoadedFunction %s %s>" % (self.spec.get("id"), self.kind)


def load_function(spec: Dict[str, Any]) -> LoadedFunction:
    """Import the function described by ``spec`` and wrap it in its adapter.

    ``spec``: the JSON-able function spec (``id``, ``path`` absolute file path, ``module`` dotted
    name, ``attr``, ``kind`` (EntryKind value), ``layout``, ``import_roots`` [str],
    ``project_root``, ``body_limit`` bytes, ``concurrency`` threads or ASGI tasks; optional
    ``max_duration`` s and ``memory`` MB for the lambda context, ``handler_log`` ``"hide"`` to
    silence a handler class's per-request line).
    Raises ``LoadError`` (file, attr, found, traceback) when the import fails or the exported
    object is not a servable entry (SPEC §2, §2.1).
    """
    label = spec.get("id") or spec.get("path") or "?"
    module = import_entry(spec)
    obj, attr = resolve_attr(module, spec, label)
    kind = classify(obj, attr, spec.get("kind"), label)
    concurrency = int(spec.get("concurrency") or DEFAULT_CONCURRENCY[kind])
    body_limit = int(spec.get("body_limit") or 4_500_000)
    executor = None
    if kind == "asgi":
        app: Any = ASGIAdapter(obj, label=label)
    elif kind == "handler":
        executor = make_pool(concurrency, "handler")
        app = HandlerAdapter(obj, executor=executor, body_limit=body_limit, label=label,
                             log_requests=spec.get("handler_log") != "hide")
    elif kind == "wsgi":
        executor = make_pool(concurrency, "wsgi")
        app = WSGIAdapter(obj, executor=executor, body_limit=body_limit, label=label)
    else:
        executor = make_pool(concurrency, "lambda", initializer=thread_event_loop)
        app = LambdaAdapter(
            obj,
            executor=executor,
            body_limit=body_limit,
            label=label,
            max_duration=float(spec.get("max_duration") or 300),
            memory=int(spec.get("memory") or 1024),
        )
    app = wrap_django_static(app, spec)  # SPEC §4 Django static files (spec["django_static"])
    return LoadedFunction(app, kind, obj, module, spec, executor)


# -- importing ---------------------------------------------------------------------------------


def import_entry(spec: Dict[str, Any]) -> types.ModuleType:
    """Import the entry file under its dotted name (see the module docstring); returns the module.

    Raises ``LoadError`` with the user's traceback (frames of the import machinery removed).
    """
    path = os.path.abspath(spec["path"])
    label = spec.get("id") or path
    roots = [os.path.abspath(r) for r in spec.get("import_roots") or [spec.get("project_root") or os.getcwd()]]
    for root in reversed(roots):
        if root in sys.path:
            sys.path.remove(root)
        sys.path.insert(0, root)
    entry_dir = os.path.dirname(path)
    if entry_dir not in sys.path:
        sys.path.append(entry_dir)
    parts = (spec.get("module") or os.path.splitext(os.path.basename(path))[0]).split(".")
    base, parts = _package_base(path, parts)
    if _collides(parts[0], base, roots):
        parts = [PRIVATE_PREFIX] + parts
    name = ".".join(parts)
    try:
        _ensure_parents(parts, base)
        mod_spec = importlib.util.spec_from_file_location(name, path)
        if mod_spec is None or mod_spec.loader is None:
            raise ImportError("cannot import %s: not a Python source file" % path)
        module = importlib.util.module_from_spec(mod_spec)
        sys.modules[name] = module
        try:
            mod_spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(name, None)
            raise
    except (KeyboardInterrupt, GeneratorExit):
        raise
    except BaseException as exc:
        found = "%s: %s" % (type(exc).__name__, exc)
        raise LoadError(
            "%s: importing the module raised %s" % (label, found),
            file=label,
            attr=None,
            found=type(exc).__name__,
            traceback=format_user_traceback(exc),
            hint="fix the error shown in the traceback; the function is reloaded when the file changes",
        ) from exc
    return module


def _package_base(path: str, parts: List[str]) -> Tuple[str, List[str]]:
    """The folder the dotted name is relative to, and the parts to use.

    ``/p/cloud-functions/api/users/[id].py`` with ``api.users.[id]`` -> ``/p/cloud-functions``.
    When the dotted name does not mirror the folders, the entry is imported as a top-level module
    named after its file, relative to its own folder.
    """
    stem = os.path.splitext(os.path.basename(path))[0]
    folders = os.path.dirname(path).split(os.sep)
    if parts and parts[-1] == stem and (len(parts) == 1 or folders[-(len(parts) - 1):] == parts[:-1]):
        depth = len(parts) - 1
        return os.sep.join(folders[: len(folders) - depth]) or os.sep, parts
    return os.path.dirname(path), [stem]


def _collides(top: str, base: str, roots: List[str]) -> bool:
    """True if ``top`` names something importable that is not the project's own folder/file."""
    if top in sys.builtin_module_names:
        return True
    existing = sys.modules.get(top)
    if existing is not None:
        where = getattr(existing, "__file__", None) or ""
        locations = list(getattr(existing, "__path__", []) or [])
        own = os.path.join(base, top)
        return not (where.startswith(own) or own in locations)
    ours = {base, "", "."} | set(roots)
    others = [p for p in sys.path if isinstance(p, str) and os.path.abspath(p) not in ours and p not in ("", ".")]
    try:
        found = importlib.machinery.PathFinder.find_spec(top, others)
    except (ImportError, ValueError):
        return False
    return found is not None and found.loader is not None


def _ensure_parents(parts: List[str], base: str) -> None:
    """Create the parent packages of ``parts`` (regular if ``__init__.py`` exists, else namespace)."""
    folder = base
    for i in range(len(parts) - 1):
        name = ".".join(parts[: i + 1])
        folder = base if parts[i] == PRIVATE_PREFIX else os.path.join(folder, parts[i])
        if name in sys.modules:
            continue
        init = os.path.join(folder, "__init__.py")
        if parts[i] != PRIVATE_PREFIX and os.path.isfile(init):
            pkg_spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[folder])
            assert pkg_spec is not None and pkg_spec.loader is not None
            package = importlib.util.module_from_spec(pkg_spec)
            sys.modules[name] = package
            try:
                pkg_spec.loader.exec_module(package)
            except BaseException:
                sys.modules.pop(name, None)
                raise
        else:
            ns_spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
            ns_spec.submodule_search_locations = [folder]
            package = importlib.util.module_from_spec(ns_spec)
            sys.modules[name] = package
        if i > 0:
            setattr(sys.modules[".".join(parts[:i])], parts[i], package)


def format_user_traceback(exc: BaseException) -> str:
    """The formatted traceback of ``exc`` without the loader's and importlib's own frames."""
    tb = exc.__traceback__
    while tb is not None and (
        tb.tb_frame.f_code.co_filename == __file__ or tb.tb_frame.f_code.co_filename.startswith("<frozen")
    ):
        tb = tb.tb_next
    return "".join(_traceback.format_exception(type(exc), exc, tb))


# -- resolving and classifying --------------------------------------------------------------------


def resolve_attr(module: types.ModuleType, spec: Dict[str, Any], label: str) -> Tuple[Any, str]:
    """The exported object: ``spec["attr"]`` if the module has it, else SPEC §2 precedence."""
    attr = spec.get("attr")
    names = ([attr] if attr else []) + [n for n in PRECEDENCE if n != attr]
    for name in names:
        if hasattr(module, name):
            return getattr(module, name), name
    raise LoadError(
        "%s: no `%s` found in the module (looked for %s)" % (label, attr or "app", ", ".join(names)),
        file=label,
        attr=attr,
        found="nothing",
        hint="export `app` (WSGI/ASGI), `application`, a `handler` class subclassing "
        "BaseHTTPRequestHandler, or a lambda `handler(event, context)`",
    )


def describe(obj: Any, code: bool = False) -> str:
    """What ``obj`` is, in words: ``"a dict"``, ``"a class Foo"``, ``"a function with 1 parameter"``.
    ``code``: put the type or class name in backticks (for messages: "a `dict`")."""
    q = "`" if code else ""
    if obj is None:
        return "None"
    if inspect.isclass(obj):
        return "a class %s%s%s" % (q, obj.__name__, q)
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        n = _positional_count(obj)
        return "a function with %s parameter%s" % (n, "" if n == 1 else "s")
    if isinstance(obj, types.ModuleType):
        return "a module"
    name = type(obj).__name__
    return ("an " if name[:1].lower() in "aeiou" else "a ") + q + name + q


def _positional_count(fn: Any) -> Optional[int]:
    """Positional parameters of ``fn`` (bound methods exclude self); None if ``*args`` or unknown."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    count = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return None
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count


def _is_known_asgi(obj: Any) -> bool:
    for klass in type(obj).__mro__:
        mod = getattr(klass, "__module__", "") or ""
        for prefix, cls_name in KNOWN_ASGI:
            if klass.__name__ == cls_name and (mod == prefix or mod.startswith(prefix + ".")):
                return True
    return False


def _is_coroutine(obj: Any) -> bool:
    call = getattr(obj, "__call__", None) if not inspect.isroutine(obj) else None  # noqa: B004 - the method itself
    return inspect.iscoroutinefunction(obj) or (call is not None and inspect.iscoroutinefunction(call))


def classify(obj: Any, attr: str, spec_kind: Optional[str], label: str) -> str:
    """Decide the adapter kind (SPEC §2, §2.1): ``"handler" | "asgi" | "wsgi" | "lambda"``.

    Raises ``LoadError`` naming the file, the attribute and what was found.
    """
    if inspect.isclass(obj) and issubclass(obj, BaseHTTPRequestHandler):
        return "handler"  # whatever its name (a configured entrypoint may call it anything)
    if inspect.isclass(obj) and attr in ("handler", "Handler"):
        raise LoadError(
            "%s: `%s` is %s, which does not subclass http.server.BaseHTTPRequestHandler"
            % (label, attr, describe(obj, code=True)),
            file=label,
            attr=attr,
            found=describe(obj),
            hint="declare it as `class %s(BaseHTTPRequestHandler)` with do_GET/do_POST methods" % attr,
        )
    if inspect.isclass(obj):
        raise LoadError(
            "%s: `%s` is %s, expected a WSGI or ASGI application object (an instance, not its class)"
            % (label, attr, describe(obj, code=True)),
            file=label,
            attr=attr,
            found=describe(obj),
            hint="export an instance, e.g. `app = %s()`" % obj.__name__,
        )
    if callable(obj):
        if attr == "handler" or spec_kind == "lambda":
            if _positional_count(obj) == 2 or _positional_count(getattr(obj, "__call__", None)) == 2:  # noqa: B004
                return "lambda"
        if _is_coroutine(obj) or _is_known_asgi(obj):
            return "asgi"
        count = _positional_count(obj)
        if count == 3:
            return "asgi"
        if count == 2:
            return "wsgi"
    expected = "a lambda handler(event, context)" if attr == "handler" else "a WSGI or ASGI application"
    raise LoadError(
        "%s: `%s` is %s, expected %s" % (label, attr, describe(obj, code=True), expected),
        file=label,
        attr=attr,
        found=describe(obj),
        hint="WSGI: app(environ, start_response); ASGI: async app(scope, receive, send); "
        "handler: a BaseHTTPRequestHandler subclass",
    )
