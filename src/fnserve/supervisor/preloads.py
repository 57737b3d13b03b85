"""Which modules a zygote preloads for a function: its load-time imports, read from the project
model's one import scan (``fnserve.project.importscan``).

Only imports executed at module load count (``ImportRef.at_load``: module and class bodies,
``if``/``try``/``with``/loop blocks; not function bodies, not ``if TYPE_CHECKING:``). What the
function's own ``sys.path`` (its import roots, then its own folder) resolves to the project
(``fnserve.project.importpath.is_local``) is never preloaded — it is the user's code, imported
fresh in each instance, and a local ``flask/`` package must shadow the real Flask exactly as in a
spawned worker — but those files' own load-time imports are followed (up to ``MAX_FILES`` files),
so ``from lib.db import engine`` preloads SQLAlchemy; relative imports are followed the same way.
An import whose failure the module handles (``try: import ujson`` / ``except ImportError: import
json``: ``ImportRef.guarded``) is listed as ``"ujson?"`` / ``"json?"`` and the zygote ignores its
failure.
"""

from __future__ import annotations

from pathlib import Path

from fnserve.project.importpath import ImportPath, Resolved, is_local, reached_namespaces
from fnserve.project.importscan import ImportScanner

from .target import WorkerTarget

MAX_FILES = 50

__all__ = ["MAX_FILES", "preload_modules"]


def preload_modules(target: WorkerTarget, scanner: ImportScanner | None = None) -> tuple[str, ...]:
    """Sorted third-party / stdlib modules imported at load time by ``target``'s entry file and
    the project-local modules it imports (see the module docstring), then the guarded ones with a
    ``?`` suffix. () when the entry is unknown or unreadable. ``scanner``: a shared
    ``ImportScanner`` (its cache spares re-parsing files many functions import)."""
    spec = target.spec
    start = spec.get("path")
    if not start:
        return ()
    entry = Path(start)
    scanner = scanner or ImportScanner()
    path = ImportPath([Path(r) for r in spec.get("import_roots") or []], [entry.parent])
    outside: list[tuple[str, bool, Resolved]] = []
    every: list[Resolved] = []
    seen: set[Path] = set()
    todo = [entry]
    while todo and len(seen) < MAX_FILES:
        file = todo.pop()
        if file in seen:
            continue
        seen.add(file)
        for ref in scanner.scan(file).imports:
            if not ref.at_load or ref.type_checking or (ref.level == 0 and ref.top.startswith("__")):
                continue  # never runs, or __future__ / __main__
            resolved = path.resolve(ref, file)
            every.append(resolved)
            if resolved.local:
                todo.extend(f for f in reversed(resolved.files) if f not in seen)
            elif ref.module:
                outside.append((ref.module, ref.guarded, resolved))
    reached = reached_namespaces(every)
    found = {name for name, guarded, r in outside if not guarded and not is_local(r, reached)}
    optional = {name for name, guarded, r in outside if guarded and not is_local(r, reached)}
    return tuple(sorted(found) + sorted(f"{n}?" for n in optional - found))
