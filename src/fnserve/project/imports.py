"""The project-local import graph, built statically (for hot reload: ``Project.dependents``).

Only imports that resolve to a scanned project file become edges; everything else (stdlib,
third-party) is ignored. Absolute imports are resolved against the import roots (project root,
``cloud-functions/``, ...), relative imports against the importing file's package. Importing
``a.b.c`` also runs ``a/__init__.py`` and ``a/b/__init__.py``, so those are edges too.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from .entrypoints import ImportRef, ModuleScan


def _module_files(base: Path, parts: Sequence[str], names: Sequence[str], known: frozenset[Path]) -> set[Path]:
    """Files run by importing dotted ``parts`` (then ``names`` from it) below folder ``base``."""
    out: set[Path] = set()
    folder = base
    init = folder / "__init__.py"
    if init in known:
        out.add(init)
    for k, part in enumerate(parts):
        last = k == len(parts) - 1
        module = folder / f"{part}.py"
        folder = folder / part
        init = folder / "__init__.py"
        if init in known:
            out.add(init)
        elif last and module in known:
            out.add(module)
            return out  # a plain module: names are attributes, not submodules
        elif not folder.is_dir() and module not in known:
            return out
    for name in names:
        for candidate in (folder / f"{name}.py", folder / name / "__init__.py"):
            if candidate in known:
                out.add(candidate)
    return out


def resolve(ref: ImportRef, file: Path, import_roots: Sequence[Path], known: frozenset[Path]) -> set[Path]:
    """The project files an import statement in ``file`` runs (a subset of ``known``)."""
    parts = [p for p in ref.module.split(".") if p]
    if ref.level:
        base = file.parent
        for _ in range(ref.level - 1):
            base = base.parent
        return _module_files(base, parts, ref.names, known)
    out: set[Path] = set()
    for root in import_roots:
        found = _module_files_absolute(root, parts, ref.names, known)
        if found:
            out |= found
            break  # the first import root that has the module wins, as on sys.path
    return out


def _module_files_absolute(root: Path, parts: Sequence[str], names: Sequence[str], known: frozenset[Path]) -> set[Path]:
    if not parts:
        return set()
    found = _module_files(root, parts, names, known)
    found.discard(root / "__init__.py")  # the import root itself is not a package being imported
    return found


def build_graph(scans: Mapping[Path, ModuleScan], import_roots: Sequence[Path]) -> dict[Path, frozenset[Path]]:
    """``file → files it imports`` for every scanned file (absolute paths)."""
    known = frozenset(scans)
    graph: dict[Path, frozenset[Path]] = {}
    for file, scan in scans.items():
        edges: set[Path] = set()
        for ref in scan.imports:
            edges |= resolve(ref, file, import_roots, known)
        edges.discard(file)
        graph[file] = frozenset(edges)
    return graph


def reverse(graph: Mapping[Path, Iterable[Path]]) -> dict[Path, frozenset[Path]]:
    """``file → files that import it directly``."""
    rev: dict[Path, set[Path]] = {}
    for src, targets in graph.items():
        for target in targets:
            rev.setdefault(target, set()).add(src)
    return {k: frozenset(v) for k, v in rev.items()}


def importers_of(rev: Mapping[Path, Iterable[Path]], path: Path) -> set[Path]:
    """``path`` and every file that imports it, transitively (breadth-first, cycle-safe)."""
    seen = {path}
    queue = deque([path])
    while queue:
        for src in rev.get(queue.popleft(), ()):
            if src not in seen:
                seen.add(src)
                queue.append(src)
    return seen
