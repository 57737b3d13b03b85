"""The code ``fnserve start`` serves: an immutable copy of the project taken when it was validated
(issue 10 item 2).

Workers import lazily (a cold start, a module imported inside a request), so serving from the live
tree would run whatever is on disk at that moment: after a SIGHUP rejected for a syntax error the
next cold start would load the broken file. ``Snapshots.take()`` copies the project into
``<project>/.fnserve/snapshots/<pid>-<n>/`` (``fnserve.build.collect.copy_tree``: no dot-folders,
virtual environments, ``node_modules``, caches or ``*.pyc``; ``public/`` is left out too: the
front serves it) and makes every file read-only; ``fnserve start`` then models and runs the
project FROM that copy, so every instance — the first and the hundredth, before and after a
rejected reload — runs the version that was validated, until a reload succeeds.

Files unchanged since the previous snapshot (same size and mtime) are hard-linked from it (both
are ours and read-only), so a reload copies only what changed. The last ``KEEP`` snapshots are
kept (instances of the previous version drain while a reload runs), older ones are removed, and
``sweep()`` removes the snapshots of fnserve processes that are gone (a ``kill -9``).
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
from pathlib import Path

from fnserve.build.collect import copy_tree
from fnserve.supervisor.launch import pid_alive

__all__ = ["KEEP", "Snapshots"]

LOG = logging.getLogger("fnserve.start")
KEEP = 3  # snapshots kept per process: the current one and the versions still draining


def _remove(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)  # read-only files go: their folders stay writable
    root = next((p for p in path.parents if p.name == ".fnserve"), None)
    if root is not None:  # its bytecode (-X pycache_prefix mirrors absolute source paths)
        shutil.rmtree(root / "pycache" / str(path.resolve()).lstrip(os.sep), ignore_errors=True)


class Snapshots:
    """The snapshots of project ``root`` taken by this process (see the module docstring).
    ``folder``: ``<root>/.fnserve/snapshots``; ``current``: the last snapshot taken, or None."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.folder = self.root / ".fnserve" / "snapshots"
        self.current: Path | None = None
        self._taken: list[Path] = []
        self._stats: dict[str, os.stat_result] = {}
        self._count = 0

    def sweep(self) -> list[Path]:
        """Remove the snapshots (and unfinished copies) of fnserve processes that no longer
        run. Returns what was removed."""
        removed: list[Path] = []
        if not self.folder.is_dir():
            return removed
        for entry in self.folder.iterdir():
            owner = entry.name.removeprefix(".tmp-").split("-", 1)[0]
            if owner.isdigit() and int(owner) != os.getpid() and not pid_alive(int(owner)):
                _remove(entry)
                removed.append(entry)
        return removed

    def take(self) -> Path:
        """Copy the project into a new read-only snapshot and return its folder (written under a
        temporary name, then renamed: a snapshot folder is always complete). Raises ``OSError``
        when the copy fails (disk full, unreadable file)."""
        self._count += 1
        name = f"{os.getpid()}-{self._count}"
        tmp = self.folder / f".tmp-{name}"
        final = self.folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        previous, before = self.current, self._stats

        def reuse(rel: str, info: os.stat_result) -> Path | None:
            old = before.get(rel)
            if previous is None or old is None or old.st_size != info.st_size or old.st_mtime_ns != info.st_mtime_ns:
                return None
            return previous / rel

        try:
            stats = copy_tree(self.root, tmp, skip=[self.root / "public"], reuse=reuse)
            _read_only(tmp)
            tmp.rename(final)
        except BaseException:
            _remove(tmp)
            raise
        self.current, self._stats = final, stats
        self._taken.append(final)
        for old_snapshot in self._taken[:-KEEP]:
            _remove(old_snapshot)
        self._taken = self._taken[-KEEP:]
        return final

    def discard(self, path: Path) -> None:
        """Forget the snapshot ``path`` (its project was rejected): the previous one is current
        again."""
        if path in self._taken:
            self._taken.remove(path)
            _remove(path)
        if self.current == path:
            self.current = self._taken[-1] if self._taken else None
            self._stats = {}  # the next snapshot copies everything (no stats of the older one kept)

    def close(self) -> None:
        """Remove every snapshot of this process (at exit: no instance runs any more)."""
        for path in self._taken:
            _remove(path)
        self._taken, self.current = [], None


def _read_only(folder: Path) -> None:
    """Every regular file under ``folder`` read-only (``a-w``); folders stay as they are."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = os.path.join(dirpath, name)
            info = os.lstat(path)
            if stat.S_ISREG(info.st_mode) and info.st_mode & 0o222:
                os.chmod(path, stat.S_IMODE(info.st_mode) & ~0o222)
