"""Third-party import detection (SPEC §7, issue 5 item 1): what distributions a project needs.

A reader of the project model's one import scan (``fnserve.project.importscan``): every function
and helper module is parsed with ``ast`` (never imported), every absolute import at any depth
(inside functions, ``if`` blocks, ...) is a ``DetectedImport``; relative imports are the
project's own and left out. An import in the body of a ``try`` whose handlers catch
``ImportError`` / ``ModuleNotFoundError`` (or a bare/``Exception`` handler), or under
``if TYPE_CHECKING:``, is **optional**: reported, not installed. ``third_party_imports`` drops
stdlib modules (the target Python's ``sys.stdlib_module_names``) and what the project serves
itself (``importpath.is_local`` along ``importpath.project_import_path``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from fnserve.deps.jsonfile import read_json_object, write_json_atomic
from fnserve.project.importpath import ImportPath, is_local, project_import_path, reached_namespaces
from fnserve.project.importscan import scan_imports
from fnserve.project.layout import iter_python_files

#: Version of the ``.fnserve/imports.json`` cache layout; another version is ignored (rescanned).
_CACHE_VERSION = 2


@dataclass(frozen=True)
class DetectedImport:
    """One import statement's module. ``module``: dotted absolute name (``google.protobuf``);
    ``file``: project-relative POSIX path; ``line``: 1-based; ``optional``: guarded by
    ``except ImportError`` or only for type checkers; ``names``: the names of
    ``from module import a, b`` (may be submodules)."""

    module: str
    file: str
    line: int
    optional: bool = False
    names: tuple[str, ...] = ()

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


def scan_file(path: Path, root: Path) -> list[DetectedImport]:
    """Absolute imports of one file (``path`` under project ``root``). A file that does not parse
    (syntax error, bad encoding) yields nothing: its function reports the error when it loads."""
    rel = path.relative_to(root).as_posix()
    scan = scan_imports(path, rel)
    return [DetectedImport(ref.module, rel, ref.line, ref.optional or ref.type_checking, ref.names)
            for ref in scan.imports if ref.level == 0 and ref.module]


class LocalModules(frozenset[str]):
    """The project's own top-level module names (a frozenset of str) and ``path``, the project's
    ``ImportPath`` that decides each import (``third_party_imports``).

    A namespace folder (no ``__init__.py``) loses to an installed regular package of the same
    name at import time (PEP 420), so ``import flask`` beside an EdgeOne ``cloud-functions/flask/``
    folder still means Flask: such a name is local only when some import of the project reaches
    into the folder (``from app.main import x``, ``from app import main`` with ``app/main.py``).
    """

    path: ImportPath

    def __new__(cls, path: ImportPath) -> LocalModules:
        self = super().__new__(cls, path.top_level_names())
        self.path = path
        return self


def local_module_names(root: Path, files: Iterable[Path]) -> LocalModules:
    """The project's own modules: along ``importpath.project_import_path`` (project root,
    ``cloud-functions/``, ``src/``, then the folder of every scanned file: sibling helpers)."""
    return LocalModules(project_import_path(root, files))


#: One file in the cache: ``((mtime_ns, size), its detected imports)``.
_CacheEntry = tuple[tuple[int, int], tuple[DetectedImport, ...]]


def scan_project(root: Path, cache_file: Path | None = None) -> tuple[list[DetectedImport], LocalModules]:
    """All absolute imports of the project's Python files and the project's own modules.
    ``cache_file`` (``.fnserve/imports.json``): per-file results keyed by mtime and size, so an
    unchanged project is not parsed again (rewritten only when something changed)."""
    files = list(iter_project_python_files(root))
    cache = _read_cache(cache_file)
    fresh: dict[str, _CacheEntry] = {}
    found: list[DetectedImport] = []
    for path in files:
        rel = path.relative_to(root).as_posix()
        try:
            stat = path.stat()
        except OSError:
            continue
        stamp = (stat.st_mtime_ns, stat.st_size)
        entry = cache.get(rel)
        imports = entry[1] if entry is not None and entry[0] == stamp else tuple(scan_file(path, root))
        fresh[rel] = (stamp, imports)
        found.extend(imports)
    if cache_file is not None and fresh != cache:
        _write_cache(cache_file, fresh)
    return found, local_module_names(root, files)


def _read_cache(path: Path | None) -> dict[str, _CacheEntry]:
    """The per-file entries of the cache file; {} when missing, unreadable or of another
    version (JSON: ``{"version": 2, "files": {rel: {"stamp": [mtime_ns, size], "imports":
    [[module, line, optional, [names]], ...]}}}``). Malformed entries are dropped."""
    data = read_json_object(path)
    if data.get("version") != _CACHE_VERSION or not isinstance(data.get("files"), dict):
        return {}
    out: dict[str, _CacheEntry] = {}
    for rel, entry in data["files"].items():
        try:
            mtime, size = entry["stamp"]
            imports = tuple(DetectedImport(m, rel, line, bool(opt), tuple(names)) for m, line, opt, names in entry["imports"])
        except (TypeError, ValueError, KeyError):
            continue
        out[rel] = ((int(mtime), int(size)), imports)
    return out


def _write_cache(path: Path, files: dict[str, _CacheEntry]) -> None:
    data = {rel: {"stamp": list(stamp), "imports": [[i.module, i.line, int(i.optional), list(i.names)] for i in imports]}
            for rel, (stamp, imports) in files.items()}
    try:
        write_json_atomic(path, {"version": _CACHE_VERSION, "files": data})
    except OSError:
        pass  # a read-only project still works, just slower


def third_party_imports(
    found: Iterable[DetectedImport], local: frozenset[str], stdlib: frozenset[str]
) -> list[DetectedImport]:
    """Drop stdlib (``stdlib``: the target Python's ``sys.stdlib_module_names``), ``__future__`` and
    project-local imports; keep file order. ``local``: ``LocalModules`` (the one rule,
    ``importpath.is_local``, with the namespace folders any of ``found`` reaches into counted as
    the project's), or a plain set of top-level names."""
    found = list(found)
    if isinstance(local, LocalModules):
        resolved = [local.path.resolve_absolute(imp.module, imp.names) for imp in found]
        reached = reached_namespaces(resolved)
        mine = [is_local(r, reached) for r in resolved]
    else:
        mine = [imp.top in local for imp in found]
    return [
        imp
        for imp, own in zip(found, mine)
        if not own and imp.top not in stdlib and imp.top != "__future__"
    ]
