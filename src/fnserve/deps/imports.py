"""Static import scan (SPEC §7, issue 5 item 1): what third-party modules a project imports.

Every function and helper module is parsed with ``ast`` (never imported). Collected: every name of
``import a, b.c`` and the module of ``from x.y import z`` (relative imports are project-local and
ignored), at any depth (inside functions, ``if`` blocks, ...). An import inside a ``try`` whose
handlers catch ``ImportError`` / ``ModuleNotFoundError`` (or a bare/``Exception`` handler) is
**optional**: reported, not installed. Stdlib modules (the target Python's
``sys.stdlib_module_names``) and project-local modules are excluded by ``third_party_imports``.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fnserve.project.layout import iter_python_files

_OPTIONAL_HANDLERS = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
FUNCTION_ROOTS = ("api", "cloud-functions")


@dataclass(frozen=True)
class DetectedImport:
    """One import statement's module. ``module``: dotted absolute name (``google.protobuf``);
    ``file``: project-relative POSIX path; ``line``: 1-based; ``optional``: guarded by
    ``except ImportError``."""

    module: str
    file: str
    line: int
    optional: bool = False
    names: tuple[str, ...] = ()  # the names of ``from module import a, b`` (may be submodules)

    @property
    def top(self) -> str:
        """The top-level package name (``google`` for ``google.protobuf``)."""
        return self.module.split(".", 1)[0]

    @property
    def where(self) -> str:
        """``"detected in api/x.py:3"``-style location (without the prefix)."""
        return f"{self.file}:{self.line}"


def iter_project_python_files(root: Path) -> Iterator[Path]:
    """Every ``.py`` file of the project outside excluded folders (SPEC §8.3), sorted: the project
    model's walk, so deps and routes agree on what belongs to the project."""
    return iter_python_files(root)


class _Visitor(ast.NodeVisitor):
    def __init__(self, rel: str) -> None:
        self.rel = rel
        self.optional_depth = 0
        self.found: list[DetectedImport] = []

    def _add(self, module: str, line: int, names: tuple[str, ...] = ()) -> None:
        self.found.append(DetectedImport(module, self.rel, line, self.optional_depth > 0, names))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level == 0 and node.module:
            self._add(node.module, node.lineno, tuple(a.name for a in node.names if a.name != "*"))

    def visit_Try(self, node: ast.Try) -> None:
        guarded = any(_catches_import_error(h.type) for h in node.handlers)
        self.optional_depth += guarded
        for stmt in node.body:
            self.visit(stmt)
        self.optional_depth -= guarded
        for part in (node.handlers, node.orelse, node.finalbody):
            for stmt in part:
                self.visit(stmt)

    visit_TryStar = visit_Try  # Python 3.11+ ``except*``


def _catches_import_error(expr: ast.expr | None) -> bool:
    if expr is None:
        return True
    names = expr.elts if isinstance(expr, ast.Tuple) else [expr]
    for name in names:
        ident = name.attr if isinstance(name, ast.Attribute) else getattr(name, "id", None)
        if ident in _OPTIONAL_HANDLERS:
            return True
    return False


def scan_file(path: Path, root: Path) -> list[DetectedImport]:
    """Imports of one file. A file that does not parse (syntax error, bad encoding) yields nothing:
    its function reports the error when it loads."""
    rel = path.relative_to(root).as_posix()
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (SyntaxError, ValueError, OSError):
        return []
    visitor = _Visitor(rel)
    visitor.visit(tree)
    return visitor.found


class LocalModules(frozenset):
    """The project's own top-level module names (a frozenset of str), plus ``namespace``: for the
    names that are only folders without ``__init__.py`` (namespace packages), those folders.

    A namespace folder loses to an installed regular package of the same name at import time
    (PEP 420), so ``import flask`` beside an EdgeOne ``cloud-functions/flask/`` folder still means
    Flask: such a name counts as local only when some import of the project reaches into the folder
    (``from app.main import x``, ``from app import main`` with ``app/main.py`` present).
    """

    namespace: dict[str, tuple[Path, ...]]

    def __new__(cls, names: Iterable[str] = (), namespace: dict[str, tuple[Path, ...]] | None = None):
        self = super().__new__(cls, names)
        self.namespace = dict(namespace or {})
        return self

    def covers(self, imp: DetectedImport) -> bool:
        """True when ``imp`` is served by the project itself, not by a distribution."""
        if imp.top not in self:
            return False
        folders = self.namespace.get(imp.top)
        if folders is None:
            return True
        parts = imp.module.split(".")[1:]
        tails = [parts] if parts else []
        tails += [parts + [name] for name in imp.names]
        return any(_exists_module(folder.joinpath(*tail)) for folder in folders for tail in tails)


def _exists_module(path: Path) -> bool:
    return path.with_name(path.name + ".py").is_file() or path.is_dir()


def local_module_names(root: Path, files: Iterable[Path]) -> LocalModules:
    """Top-level names importable from the project itself: ``*.py`` files and folders holding
    Python in the project root, ``src/``, each function root (EdgeOne puts ``cloud-functions/`` on
    ``sys.path``) and the folder of every scanned file (sibling helpers). Folders without
    ``__init__.py`` are recorded as namespace folders (see ``LocalModules``)."""
    roots = {root, root / "src", *(root / r for r in FUNCTION_ROOTS)}
    roots.update(p.parent for p in files)
    regular: set[str] = set()
    namespace: dict[str, list[Path]] = {}
    for folder in sorted(roots):
        try:
            entries = list(folder.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.suffix == ".py" or entry.suffix in (".so", ".pyd"):
                regular.add(entry.name.split(".", 1)[0])
            elif entry.is_dir() and entry.name.isidentifier():
                if (entry / "__init__.py").exists():
                    regular.add(entry.name)
                elif any(entry.glob("*.py")):
                    namespace.setdefault(entry.name, []).append(entry)
    only_namespace = {name: tuple(dirs) for name, dirs in namespace.items() if name not in regular}
    return LocalModules(regular | set(namespace), only_namespace)


def scan_project(root: Path, cache_file: Path | None = None) -> tuple[list[DetectedImport], LocalModules]:
    """All imports of the project's Python files and the project-local top-level names.
    ``cache_file`` (``.fnserve/imports.json``): per-file results keyed by mtime and size, so an
    unchanged project is not parsed again (rewritten only when something changed)."""
    files = list(iter_project_python_files(root))
    cache = _read_json(cache_file)
    fresh: dict[str, dict] = {}
    found: list[DetectedImport] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            stat = path.stat()
        except OSError:
            continue
        stamp = [stat.st_mtime_ns, stat.st_size]
        entry = cache.get(rel)
        if entry and entry.get("stamp") == stamp:
            imports = [DetectedImport(m, rel, line, bool(opt), tuple(names[0]) if names else ())
                       for m, line, opt, *names in entry["imports"]]
        else:
            imports = scan_file(path, root)
        fresh[rel] = {"stamp": stamp, "imports": [[i.module, i.line, int(i.optional), list(i.names)] for i in imports]}
        found.extend(imports)
    if cache_file is not None and fresh != cache:
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(fresh))
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only project still works, just slower
    return found, local_module_names(root, files)


def _read_json(path: Path | None) -> dict:
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def third_party_imports(
    found: Iterable[DetectedImport], local: frozenset[str], stdlib: frozenset[str]
) -> list[DetectedImport]:
    """Drop stdlib (``stdlib``: the target Python's ``sys.stdlib_module_names``), ``__future__`` and
    project-local imports (``local``: a plain set of names, or ``LocalModules`` whose namespace
    folders count only for imports reaching into them); keep file order."""
    found = list(found)
    if isinstance(local, LocalModules):  # a namespace folder any import reaches into is the project's
        reached = {imp.top for imp in found if imp.top in local.namespace and local.covers(imp)}
        local = LocalModules(local, {k: v for k, v in local.namespace.items() if k not in reached})
        covers = local.covers
    else:
        covers = lambda imp: imp.top in local  # noqa: E731
    return [
        imp
        for imp in found
        if imp.top not in stdlib and imp.top != "__future__" and not covers(imp)
    ]
