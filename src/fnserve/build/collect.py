"""Which project files go into a build output (SPEC §8.2) and the work copy they are taken from.

Two passes:

1. ``copy_tree(src, dst)``: the build's working copy. Everything of the project except folders
   that are never the project's own source (``NEVER_COPIED``: VCS data, fnserve's state, virtual
   environments, ``node_modules``, caches; any folder starting with ``.``) and ``*.pyc``. Files are
   COPIED (never hard-linked): a build command runs in this copy and must not be able to change
   the user's files through a shared inode.
2. ``select_files(root, functions, limits)``: after the build command, the files each function
   needs. Default: every file outside the excluded folders of SPEC §8.2 (``scripts``, ``tests``,
   dot-folders, ...), outside ``public/`` (that becomes ``static/``), not ``*.pyc``; then the
   function's ``excludeFiles`` glob removes files and its ``includeFiles`` glob adds any file of
   the work copy back (even from ``tests/``). Non-Python assets (templates, data) are kept.
   Configuration files (``CONFIG_NAMES``, ``.env*``) are always kept: ``start --from`` reads them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from fnserve.config.effective import glob_matches
from fnserve.project.layout import VENDOR_DIRS, is_excluded_dir

#: Folders never copied into the work copy (never the project's own files), besides dot-folders.
NEVER_COPIED: frozenset[str] = VENDOR_DIRS | {".pytest_cache", ".mypy_cache", ".ruff_cache", ".vercel"}
CONFIG_NAMES: frozenset[str] = frozenset({"pyproject.toml", "fnserve.toml", "vercel.json", "edgeone.json",
                                          "requirements.txt", ".python-version"})
STATIC_DIR = "public"


def _skip_dir(name: str) -> bool:
    return name in NEVER_COPIED or name.startswith(".")


def copy_tree(src: Path, dst: Path, *, skip: Iterable[Path] = (),
              reuse: Callable[[str, os.stat_result], Path | None] | None = None) -> dict[str, os.stat_result]:
    """Copy project ``src`` into the new folder ``dst`` (see the module docstring), keeping mtimes.
    ``skip``: absolute folders left out (the output folder when it lies inside the project);
    ``reuse(rel, stat)``: an unchanged file from a previous output to hard-link instead of copying
    (its inode is already the build's own), or None. Returns ``{rel: stat}`` of the source files
    copied (``rel``: POSIX path relative to ``src``). Symlinks are copied as symlinks."""
    skipped = {Path(p).resolve() for p in skip}
    copied: dict[str, os.stat_result] = {}
    for dirpath, dirnames, filenames in os.walk(src):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not _skip_dir(d) and (here / d).resolve() not in skipped)
        rel_dir = here.relative_to(src)
        (dst / rel_dir).mkdir(parents=True, exist_ok=True)
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            source, target = here / name, dst / rel_dir / name
            rel = (rel_dir / name).as_posix()
            if source.is_symlink():
                os.symlink(os.readlink(source), target)
                continue
            info = source.stat()
            previous = reuse(rel, info) if reuse is not None else None
            if previous is not None:
                try:
                    os.link(previous, target)
                    copied[rel] = info
                    continue
                except OSError:
                    pass
            copy_file(source, target, info)
            copied[rel] = info
    return copied


SPARSE_MIN = 1 << 20  # bytes: smaller files are copied plainly


def copy_file(src: Path, dst: Path, info: os.stat_result | None = None) -> None:
    """``shutil.copy2``, except that a sparse file (fewer blocks than its size) stays sparse: only
    its data segments are copied (``SEEK_DATA``/``SEEK_HOLE``), so a disk image or a preallocated
    file does not grow on disk in the output."""
    info = info or src.stat()
    if info.st_size < SPARSE_MIN or info.st_blocks * 512 >= info.st_size or not hasattr(os, "SEEK_DATA"):
        shutil.copy2(src, dst)
        return
    with open(src, "rb") as reader, open(dst, "wb") as writer:
        fd, pos = reader.fileno(), 0
        while pos < info.st_size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:  # ENXIO: only a hole is left
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            reader.seek(start)
            writer.seek(start)
            left = end - start
            while left > 0:
                chunk = reader.read(min(left, 1 << 20))
                if not chunk:
                    break
                writer.write(chunk)
                left -= len(chunk)
            pos = end
        writer.truncate(info.st_size)
    shutil.copystat(src, dst)


def walk_files(root: Path) -> Iterator[str]:
    """Every file under ``root`` (POSIX paths relative to it, sorted), symlinks to files included."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        rel_dir = Path(dirpath).relative_to(root)
        for name in sorted(filenames):
            yield (rel_dir / name).as_posix()


def default_included(rel: str) -> bool:
    """Is project file ``rel`` in a function's bundle unless ``excludeFiles`` says otherwise?"""
    parts = rel.split("/")
    if parts[0] == STATIC_DIR or rel.endswith((".pyc", ".pyo")):
        return False
    return not any(is_excluded_dir(part) for part in parts[:-1])


def is_config_file(rel: str) -> bool:
    """A configuration file of the project root (kept for ``start --from``)."""
    return "/" not in rel and (rel in CONFIG_NAMES or rel == ".env" or rel.startswith(".env."))


@dataclass(frozen=True)
class Selection:
    """``functions``: function id → the files it needs (sorted); ``kept``: the union, plus the
    configuration files; ``static``: files under ``public/``; ``dropped``: files of the work copy
    no function needs, with the reason (``"excluded folder ..."``, ``"excludeFiles of <ids>"``);
    ``excluded``: function id → the files its ``excludeFiles`` glob removed."""

    functions: Mapping[str, tuple[str, ...]]
    kept: frozenset[str]
    static: tuple[str, ...]
    dropped: Mapping[str, str]
    excluded: Mapping[str, tuple[str, ...]]


def select_files(root: Path, function_ids: Iterable[str],
                 globs: Callable[[str], tuple[str | None, str | None]]) -> Selection:
    """Decide the files of each function in the work copy ``root``. ``globs(function_id)``:
    ``(include_files, exclude_files)`` of that function (``Config.limits_for``), each a glob or
    None (see ``fnserve.config.effective.glob_matches``)."""
    every = list(walk_files(root))
    static = tuple(r for r in every if r.split("/")[0] == STATIC_DIR)
    per_function: dict[str, tuple[str, ...]] = {}
    excluded_by: dict[str, list[str]] = {}
    for fid in function_ids:
        include, exclude = globs(fid)
        files = []
        for rel in every:
            if include and glob_matches(include, rel):
                files.append(rel)
            elif default_included(rel):
                if exclude and glob_matches(exclude, rel):
                    excluded_by.setdefault(rel, []).append(fid)
                else:
                    files.append(rel)
        per_function[fid] = tuple(files)
    kept = {r for files in per_function.values() for r in files} | {r for r in every if is_config_file(r)}
    dropped = {}
    for rel in every:
        if rel in kept or rel in static:
            continue
        dropped[rel] = (f"excludeFiles of {', '.join(excluded_by[rel])}" if rel in excluded_by
                        else "excluded folder or file (SPEC §8.2)")
    excluded = {fid: tuple(r for r, ids in excluded_by.items() if fid in ids) for fid in per_function}
    return Selection(per_function, frozenset(kept), static, dropped, excluded)
