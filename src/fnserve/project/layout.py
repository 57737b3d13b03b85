"""Function roots, excluded folders and the project file walk (SPEC §1, §8.2, §8.3).

Public for reuse by ``deps`` and ``build``: ``EXCLUDED_DIRS``, ``is_excluded_dir``,
``iter_python_files``. Everything here only lists files; nothing is parsed or imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .types import Layout

#: Folder names never scanned for functions or helpers (SPEC §8.2/§8.3). Any folder whose name
#: starts with ``.`` is excluded too (``is_excluded_dir``).
EXCLUDED_DIRS: frozenset[str] = frozenset(
    {"__pycache__", ".git", "node_modules", "venv", ".venv", "scripts", "tests", ".pytest_cache", ".fnserve"}
)

#: Excluded folders that hold third-party or generated code: never even looked into for warnings.
VENDOR_DIRS: frozenset[str] = frozenset({"__pycache__", ".git", "node_modules", "venv", ".venv", ".fnserve"})

#: Function roots in scan order: folder name → layout (SPEC §1).
FUNCTION_ROOTS: tuple[tuple[str, Layout], ...] = (("api", Layout.VERCEL), ("cloud-functions", Layout.EDGEONE))


def is_excluded_dir(name: str) -> bool:
    """True when a folder called ``name`` is never scanned (SPEC §8.3): a name in ``EXCLUDED_DIRS``
    or any name starting with ``.``."""
    return name in EXCLUDED_DIRS or name.startswith(".")


def function_roots(root: Path) -> tuple[tuple[Layout, Path], ...]:
    """The function roots that exist under project ``root``: ``(layout, absolute folder)`` pairs,
    Vercel's ``api/`` first, then EdgeOne's ``cloud-functions/``."""
    return tuple((layout, root / name) for name, layout in FUNCTION_ROOTS if (root / name).is_dir())


def iter_python_files(root: Path) -> Iterator[Path]:
    """Yield every ``.py`` file under ``root`` (absolute paths, sorted, depth-first), skipping
    dotfiles (``.x.py`` is not importable) and excluded folders (``is_excluded_dir``) without descending into them. Symlinked folders are not
    followed, so a link to a virtualenv cannot add thousands of files."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not is_excluded_dir(d))
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith("."):
                yield Path(dirpath) / name


def iter_excluded_python_files(root: Path, *, limit: int = 500) -> Iterator[Path]:
    """Yield ``.py`` files that sit under an excluded folder inside ``root`` (for example
    ``api/tests/test_x.py``), at most ``limit`` of them. Vendor folders (``VENDOR_DIRS``, dotted
    folders) are not entered at all. Used to warn about entrypoints that will never be routes."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        inside = any(is_excluded_dir(part) for part in Path(dirpath).relative_to(root).parts)
        dirnames[:] = sorted(d for d in dirnames if d not in VENDOR_DIRS and not d.startswith("."))
        if not inside:
            continue
        for name in sorted(filenames):
            if name.endswith(".py"):
                yield Path(dirpath) / name
                count += 1
                if count >= limit:
                    return


def relative_id(root: Path, path: Path) -> str:
    """``path`` relative to project ``root`` as a POSIX string (``api/users/[id].py``)."""
    return path.relative_to(root).as_posix()


def module_name(import_root: Path, path: Path) -> str:
    """The dotted module name of ``path`` under ``import_root``: ``api/users/[id].py`` →
    ``api.users.[id]``; a package's ``__init__.py`` is named after its folder."""
    parts = list(path.relative_to(import_root).with_suffix("").parts)
    if parts and parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)
