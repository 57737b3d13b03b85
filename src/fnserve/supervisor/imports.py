"""Which modules a zygote preloads for a function: its top-level imports, found with ``ast``.

Only imports executed at module load count (module body, including ``if``/``try``/``with``
blocks; not function or class bodies). Project-local modules (found under the function's
``import_roots``) are never preloaded — they are the user's code, imported fresh in each instance,
and a local ``flask/`` folder must shadow the real Flask exactly as in a spawned worker — but their
own top-level imports are followed (up to ``MAX_FILES`` files), so ``from lib.db import engine``
preloads SQLAlchemy. Relative imports are local by definition. An import inside a ``try`` block is
optional (``try: import ujson`` / ``except ImportError``): it is listed as ``"ujson?"`` and the
zygote ignores its failure.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from .target import WorkerTarget

MAX_FILES = 50

__all__ = ["preload_modules", "top_level_imports"]


def _body_imports(body: list[ast.stmt], guarded: bool = False) -> Iterator[tuple[str, int, bool]]:
    for node in body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, 0, guarded
        elif isinstance(node, ast.ImportFrom):
            yield node.module or "", node.level, guarded
        elif isinstance(node, (ast.If, ast.With)):
            yield from _body_imports(node.body, guarded)
            yield from _body_imports(getattr(node, "orelse", []) or [], guarded)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            yield from _body_imports(node.body, True)
            for handler in node.handlers:
                yield from _body_imports(handler.body, True)
            yield from _body_imports(node.orelse, True)
            yield from _body_imports(node.finalbody, guarded)


def top_level_imports(source: str) -> list[tuple[str, int, bool]]:
    """``(dotted name, level, guarded)`` of every import run at module load (``guarded``: inside
    a ``try``); [] for a syntax error."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return []
    return list(_body_imports(tree.body))


def _local_file(name: str, roots: list[Path]) -> Path | None | bool:
    """The project file of module ``name`` if it is local (True for a local package without a
    readable ``__init__``), else None."""
    parts = name.split(".")
    for root in roots:
        if (root / f"{parts[0]}.py").is_file() or (root / parts[0]).is_dir():
            base = root.joinpath(*parts)
            for candidate in (base.with_suffix(".py"), base / "__init__.py"):
                if candidate.is_file():
                    return candidate
            return True
    return None


def preload_modules(target: WorkerTarget) -> tuple[str, ...]:
    """Sorted third-party / stdlib modules imported at load time by ``target``'s entry file and
    the project-local modules it imports (see the module docstring). () when unreadable."""
    spec = target.spec
    roots = [Path(r) for r in spec.get("import_roots") or []]
    start = spec.get("path")
    if not start:
        return ()
    found: set[str] = set()
    optional: set[str] = set()
    seen: set[Path] = set()
    todo = [Path(start)]
    while todo and len(seen) < MAX_FILES:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for name, level, guarded in top_level_imports(source):
            if level or not name or name == "__future__" or name.startswith("__"):
                continue
            local = _local_file(name, roots)
            if local is None:
                (optional if guarded else found).add(name)
            elif isinstance(local, Path):
                todo.append(local)
    return tuple(sorted(found) + sorted(f"{n}?" for n in optional - found))
