"""The zero-config single app (SPEC §3.3; Vercel's "Flask/FastAPI/Django on Vercel").

``find_app(root, entrypoint, scan)`` returns the one ``Function`` (layout ``APP``) that serves the
whole project, looking in Vercel's order:

1. the configured ``module:attr``;
2. Django: ``manage.py`` (root or a first-level folder) naming ``DJANGO_SETTINGS_MODULE`` → that
   settings module's ``ASGI_APPLICATION``, else ``WSGI_APPLICATION`` (``mysite.wsgi.application``);
3. the first of ``{app,index,server,main,wsgi,asgi}.py`` in ``""``, ``src/``, ``app/``, ``api/``
   that exports an entry (SPEC §2);
4. ``[project.scripts] app = "module:attr"`` in ``pyproject.toml`` (any attribute name).

Raises ``NoEntrypointError`` listing every candidate file that exports something, with a hint.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable
from pathlib import Path

from ..errors import NoEntrypointError
from .entrypoints import ModuleScan, entry_for_attr
from .layout import is_excluded_dir, module_name, relative_id
from .types import Function, Layout

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    # tomli is installed only on Python 3.10 (the mypy target), so it may be absent where mypy runs
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

#: Frameworks (vercel.json ``"framework"``) that mean "one Python app" (SPEC §3.3).
PYTHON_PRESETS = frozenset({"python", "flask", "fastapi", "django", "fasthtml"})
CANDIDATE_DIRS = ("", "src", "app", "api")
CANDIDATE_NAMES = ("app", "index", "server", "main", "wsgi", "asgi")

Scanner = Callable[[Path], ModuleScan]

_HINT = (
    "name your application `app` (for example `app = Flask(__name__)`) in one of "
    "app.py, index.py, server.py, main.py, wsgi.py or asgi.py at the project root or in src/, app/ or api/, "
    'or set `[tool.fnserve] entrypoint = "module:attr"` in pyproject.toml'
)


def find_app(root: Path, entrypoint: str | None, scan: Scanner) -> Function:
    """The zero-config app of project ``root`` (absolute). ``entrypoint``: configured
    ``"module:attr"`` or None; ``scan``: ``path → ModuleScan`` (cached by the caller).
    Raises ``NoEntrypointError``."""
    if entrypoint:
        found = _from_target(root, entrypoint, scan, (root, root / "src"))
        if found is None:
            raise NoEntrypointError(
                root, [], f"the configured entrypoint {entrypoint!r} was not found: "
                "give an importable `module:attr` relative to the project root (or src/), e.g. `main:app`",
            )
        return found
    for step in (_django, _candidate_files, _project_scripts):
        found = step(root, scan)
        if found is not None:
            return found
    candidates = _exporting_candidates(root, scan)
    raise NoEntrypointError(root, candidates, _EMPTY_HINT if not candidates and _is_empty(root) else _HINT)


_EMPTY_HINT = (
    "this folder has no functions (api/*.py, cloud-functions/**/*.py or an app) and no static files "
    "(public/): there is nothing to serve. Start a project with `fnserve init` "
    "(`fnserve init --list` shows the templates), or add api/hello.py or public/index.html"
)


def _is_empty(root: Path) -> bool:
    """True when ``root`` holds no Python file outside excluded folders and no file in ``public/``
    (issue 13: say so, and point at ``fnserve init``, instead of serving 404s)."""
    from .layout import iter_python_files

    public = root / "public"
    has_static = public.is_dir() and any(p.is_file() for p in public.rglob("*"))
    return not has_static and next(iter_python_files(root), None) is None


def _make(root: Path, path: Path, import_root: Path, scan: ModuleScan, attr: str | None) -> Function | None:
    """A Function for ``path``; None if it does not export ``attr`` (or any entry when None).
    A file that does not parse becomes a Function carrying its syntax error."""
    roots = (root,) if import_root == root else (root, import_root)
    fid, mod = relative_id(root, path), module_name(import_root, path)
    if scan.error is not None:
        return Function(fid, path, mod, Layout.APP, None, roots, error=scan.error)
    entry = scan.entry if attr is None else entry_for_attr(scan, attr)
    if entry is None:
        return None
    return Function(fid, path, mod, Layout.APP, entry, roots)


def _resolve_module(dotted: str, bases: tuple[Path, ...]) -> tuple[Path, Path] | None:
    """``a.b`` → ``(file, import_root)`` for the first base holding ``a/b.py`` or
    ``a/b/__init__.py``. A path form (``src/app.py``) is accepted too."""
    if dotted.endswith(".py") or "/" in dotted:
        rel = dotted.removesuffix(".py").strip("/").split("/")
    else:
        rel = dotted.split(".")
    for base in bases:
        for candidate in (base.joinpath(*rel).with_suffix(".py"), base.joinpath(*rel, "__init__.py")):
            if candidate.is_file():
                return candidate, base
    return None


def _from_target(root: Path, target: str, scan: Scanner, bases: tuple[Path, ...]) -> Function | None:
    module, _, attr = target.partition(":")
    resolved = _resolve_module(module.strip(), bases)
    if resolved is None:
        return None
    path, import_root = resolved
    if "/" in module or module.endswith(".py"):
        import_root = root
    return _make(root, path, import_root, scan(path), attr.strip() or "app")


def _django(root: Path, scan: Scanner) -> Function | None:
    """Step 2: ``manage.py`` → settings module → ``ASGI_APPLICATION`` / ``WSGI_APPLICATION``."""
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir() and not is_excluded_dir(p.name) and not p.name.startswith("_"))
    for folder in folders:
        manage = folder / "manage.py"
        if not manage.is_file():
            continue
        settings = _string_arg_after(manage, "DJANGO_SETTINGS_MODULE")
        resolved = _resolve_module(settings, (folder,)) if settings else None
        if resolved is None:
            continue
        for name in ("ASGI_APPLICATION", "WSGI_APPLICATION"):
            target = _assigned_string(resolved[0], name)
            if target and "." in target:
                module, _, attr = target.rpartition(".")
                found = _from_target(root, f"{module}:{attr}", scan, (folder,))
                if found is not None:
                    return found
    return None


def _candidate_files(root: Path, scan: Scanner) -> Function | None:
    """Step 3: the first ``{app,index,server,main,wsgi,asgi}.py`` in ``""``, ``src/``, ``app/``, ``api/``."""
    for path in _candidates(root):
        import_root = root / "src" if path.parent == root / "src" else root
        found = _make(root, path, import_root, scan(path), None)
        if found is not None:
            return found
    return None


def _project_scripts(root: Path, scan: Scanner) -> Function | None:
    """Step 4: ``[project.scripts] app = "module:attr"`` in ``pyproject.toml``."""
    pyproject = root / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None  # the config loader reports a broken pyproject.toml
    target = data.get("project", {}).get("scripts", {}).get("app")
    if not isinstance(target, str) or ":" not in target:
        return None
    return _from_target(root, target, scan, (root, root / "src"))


def _candidates(root: Path) -> list[Path]:
    return [
        root / folder / f"{name}.py"
        for folder in CANDIDATE_DIRS
        for name in CANDIDATE_NAMES
        if (root / folder / f"{name}.py").is_file()
    ]


def _exporting_candidates(root: Path, scan: Scanner) -> list[str]:
    """Candidate files that bind some top-level name, shown as ``app.py (defines create_app, db)``."""
    out = []
    for path in _candidates(root):
        result = scan(path)
        if result.names:
            out.append(f"{relative_id(root, path)} (defines {', '.join(result.names[:6])})")
    return out


def _parse(path: Path) -> ast.Module | None:
    try:
        return ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None


def _string_arg_after(path: Path, key: str) -> str | None:
    """In ``manage.py``: the string value given for ``key`` in a call such as
    ``os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")``."""
    tree = _parse(path)
    for node in ast.walk(tree) if tree else ():
        if isinstance(node, ast.Call) and len(node.args) >= 2:
            first, second = node.args[0], node.args[1]
            if isinstance(first, ast.Constant) and first.value == key and isinstance(second, ast.Constant):
                return second.value if isinstance(second.value, str) else None
    return None


def _assigned_string(path: Path, name: str) -> str | None:
    """The string assigned to top-level ``name`` in a settings module, or None."""
    tree = _parse(path)
    for node in tree.body if tree else ():
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            if any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
                return node.value.value
    return None
