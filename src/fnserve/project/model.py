"""``load_project``: build the immutable project model (SPEC §1–§3, §8.3).

Reads files and parses them with ``ast``; imports no user code, opens no socket. A reload builds a
new ``Project``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..errors import NoEntrypointError
from . import importgraph
from .entrypoints import ModuleScan, scan_file
from .importpath import ImportPath
from .importscan import StampCache
from .layout import (
    EXCLUDED_DIRS,
    function_roots,
    iter_excluded_python_files,
    iter_python_files,
    module_name,
    relative_id,
)
from .matcher import RouteTable
from .routes import RouteShapeError, routes_for
from .types import Function, HelperModule, Layout, Problem, Route
from .zeroconfig import PYTHON_PRESETS, find_app


@dataclass(frozen=True)
class Project:
    """The project model. ``root``: absolute project folder; ``functions``: every entrypoint
    (sorted by id); ``routes``: the ``RouteTable``; ``helpers``: every other ``.py`` file;
    ``problems``: syntax errors and warnings found while scanning (never fatal);
    ``zero_config``: True when the project is one app mounted at ``/`` (SPEC §3.3)."""

    root: Path
    functions: tuple[Function, ...]
    routes: RouteTable
    helpers: tuple[HelperModule, ...] = ()
    problems: tuple[Problem, ...] = ()
    zero_config: bool = False
    _importers: Mapping[Path, frozenset[Path]] = field(default_factory=dict, repr=False, compare=False)

    def function(self, function_id: str) -> Function | None:
        """The function with id ``function_id`` (``api/hello.py``), or None."""
        return next((f for f in self.functions if f.id == function_id), None)

    def dependents(self, path: Path) -> frozenset[str]:
        """Ids of the functions whose file is ``path`` or that import it, transitively, through
        project-local imports (hot reload reloads exactly these). ``path``: absolute or relative
        to the project root. Unknown files → empty set."""
        path = Path(path)
        path = (path if path.is_absolute() else self.root / path).resolve()
        affected = importgraph.importers_of(self._importers, path)
        return frozenset(f.id for f in self.functions if f.path in affected)

    @property
    def has_errors(self) -> bool:
        """True when some problem has severity "error" (the project serves, but not everything)."""
        return any(p.severity == "error" for p in self.problems)


def load_project(
    root: Path | str, *, entrypoint: str | None = None, framework: str | None = None,
    scan_cache: StampCache[ModuleScan] | None = None,
) -> Project:
    """Scan project ``root`` and return its ``Project``.

    ``entrypoint``: configured ``"module:attr"``; ``framework``: vercel.json ``"framework"`` (a
    Python preset forces the zero-config app); ``scan_cache``: kept by a caller that loads the
    project again and again (``fnserve dev``): unchanged files are not parsed again. Raises ``DuplicateRouteError`` (two files, one
    route) and ``NoEntrypointError`` (nothing at all can be served; a project with a ``public/``
    folder can still serve static files and gets a warning instead).
    """
    root = Path(root).resolve()
    scans: dict[Path, ModuleScan] = {}

    def scan(path: Path) -> ModuleScan:
        if path not in scans:
            rid = relative_id(root, path)
            scans[path] = (scan_file(path, rid) if scan_cache is None else
                           scan_cache.get(path, rid, lambda: scan_file(path, rid)))
        return scans[path]

    problems: list[Problem] = []
    functions: list[Function] = []
    function_root_of: dict[str, Path] = {}
    for layout, froot in function_roots(root):
        for path in iter_python_files(froot):
            fn = _function_for(root, layout, froot, path, scan)
            if fn is not None:
                functions.append(fn)
                function_root_of[fn.id] = froot
        problems += _excluded_entry_warnings(root, froot, scan)

    forced = bool(entrypoint) or (framework or "").lower() in PYTHON_PRESETS
    zero_config = forced or not functions
    if zero_config:
        try:
            functions = [find_app(root, entrypoint, scan)]
        except NoEntrypointError as exc:
            if forced or not (root / "public").is_dir():
                raise
            functions = []
            problems.append(Problem("warning", f"no function found; serving public/ only ({exc.message})", hint=exc.hint))

    routes: list[Route] = []
    for fn in functions:
        if fn.error is not None:
            problems.append(fn.error)
        try:
            routes += routes_for(fn, function_root_of.get(fn.id))
        except RouteShapeError as exc:
            problems.append(Problem("error", str(exc), fn.id, hint="rename the file or folder"))
    table = RouteTable(routes)
    problems += _shadow_warnings(root, table)

    all_files = list(iter_python_files(root))
    for path in all_files:
        scan(path)
    import_roots = _import_roots(root, functions)
    # sys.path of the functions together: their import roots first, their own folders last
    import_path = ImportPath(import_roots, sorted({fn.path.parent for fn in functions}))
    rev = importgraph.reverse(importgraph.build_graph({p: scans[p].imports for p in all_files}, import_path))
    if scan_cache is not None:
        scan_cache.retain(scans)
    helpers = _helpers(root, all_files, functions, import_roots, rev)
    for h in helpers:
        err = scans[h.path].error
        if err is not None:
            problems.append(Problem("warning", f"helper module: {err.message}", err.file, err.line, "its importers will fail to load"))
    return Project(
        root=root,
        functions=tuple(sorted(functions, key=lambda f: f.id)),
        routes=table,
        helpers=helpers,
        problems=tuple(problems),
        zero_config=zero_config and bool(functions),
        _importers=MappingProxyType(rev),
    )


def _function_for(root: Path, layout: Layout, froot: Path, path: Path, scan: Callable[[Path], ModuleScan]) -> Function | None:
    """A Function for an entrypoint under a function root, None for a helper module."""
    rel = path.relative_to(froot).parts
    if any(part.startswith(("_", ".")) for part in rel):
        return None  # _lib/greet.py, _utils.py: helpers by name (SPEC §2)
    result = scan(path)
    if result.entry is None and result.error is None:
        return None
    import_roots: tuple[Path, ...]
    if layout is Layout.EDGEONE:
        import_roots, mod = (root, froot), module_name(froot, path)
    else:
        import_roots, mod = (root,), module_name(root, path)
    return Function(relative_id(root, path), path, mod, layout, result.entry, import_roots, error=result.error)


def _import_roots(root: Path, functions: list[Function]) -> tuple[Path, ...]:
    roots = [root]
    for fn in functions:
        roots += [r for r in fn.import_roots if r not in roots]
    if (root / "cloud-functions").is_dir() and root / "cloud-functions" not in roots:
        roots.append(root / "cloud-functions")
    return tuple(roots)


def _helpers(
    root: Path, files: list[Path], functions: list[Function], import_roots: tuple[Path, ...], rev: Mapping[Path, frozenset[Path]]
) -> tuple[HelperModule, ...]:
    """Every scanned file that is not a function, with the functions that import it."""
    by_path = {f.path: f.id for f in functions}
    out = []
    for path in files:
        if path in by_path:
            continue
        base = next((r for r in reversed(import_roots) if path.is_relative_to(r)), root)
        users = importgraph.importers_of(rev, path)
        importers = tuple(sorted(by_path[p] for p in users if p in by_path))
        out.append(HelperModule(relative_id(root, path), path, module_name(base, path), importers))
    return tuple(out)


def _excluded_entry_warnings(root: Path, froot: Path, scan: Callable[[Path], ModuleScan]) -> list[Problem]:
    """Files under excluded folders inside a function root that look like entrypoints (SPEC §8.3)."""
    out = []
    for path in iter_excluded_python_files(froot):
        result = scan(path)
        if result.entry is not None:
            folder = next(p for p in path.relative_to(froot).parts if p.startswith(".") or p in EXCLUDED_DIRS)
            out.append(Problem(
                "warning", f"exports `{result.entry.attr}` but is under the excluded folder {folder}/, so it is not a route",
                relative_id(root, path), result.entry.line, "move it out of that folder if it should be served",
            ))
    return out


def _shadow_warnings(root: Path, table: RouteTable) -> list[Problem]:
    """Routes that never see some of their requests: a ``public/`` file at the same URL (static
    files are served first, SPEC §6), or an optional catch-all whose empty match an exact route
    at its prefix takes."""
    out = []
    public = root / "public"
    for route in table.routes:
        segs = route.segments
        if public.is_dir() and segs and all(s.kind == "literal" for s in segs):
            static = public.joinpath(*(s.value for s in segs))
            if static.is_file() or (static / "index.html").is_file():
                out.append(Problem(
                    "warning", f"route {route.pattern} is shadowed by the static file {relative_id(root, static)}",
                    route.function.id, hint="static files are served first; rename one of them",
                ))
        if segs and segs[-1].kind == "optional" and all(s.kind == "literal" for s in segs[:-1]):
            prefix = "/" + "/".join(s.value for s in segs[:-1])
            hit = table.match(prefix)
            if hit is not None and hit.route is not route and hit.route.segments == segs[:-1]:
                out.append(Problem(
                    "warning", f"route {route.pattern} never receives {prefix}: {hit.route.pattern} "
                    f"({hit.function.id}) is more specific", route.function.id,
                ))
    return out
