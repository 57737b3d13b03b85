"""The project-local import graph (for hot reload: ``Project.dependents``), built from the one
import scan (``importscan``) and the one rule for what is local (``importpath``).

Only imports that resolve to a scanned project file become edges; stdlib and third-party imports
are ignored. Resolution is ``ImportPath.resolve``: absolute imports along the project's import
path, relative imports against the importing file's package. Importing ``a.b.c`` also runs
``a/__init__.py`` and ``a/b/__init__.py``, so those are edges too. Every import counts, including
lazy ones inside functions (a reload must pick them up).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from pathlib import Path

from .importpath import ImportPath
from .importscan import ImportRef


def build_graph(imports: Mapping[Path, Iterable[ImportRef]], path: ImportPath) -> dict[Path, frozenset[Path]]:
    """``file → project files it imports`` for every file of ``imports`` (absolute paths; only
    files that are keys of ``imports`` become edges; a file never imports itself)."""
    known = frozenset(imports)
    graph: dict[Path, frozenset[Path]] = {}
    for file, refs in imports.items():
        edges: set[Path] = set()
        for ref in refs:
            edges.update(f for f in path.resolve(ref, file).files if f in known)
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
