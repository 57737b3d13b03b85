"""Hot reload for ``fnserve dev``: which saved files mean what (issue 4 "Hot reload").

``Reloader`` watches the project folder only (watchfiles ``awatch``; never site-packages),
classifies each batch of changes into a ``Plan`` and hands it to an ``apply`` coroutine (the dev
server), which returns the one line to print. ``Reloader.step(changes)`` does one batch and is
what tests drive; ``Reloader.run(stop)`` loops over ``awatch``.

Classification (paths relative to the project root):

=========================================  ==================================================
``vercel.json``, ``edgeone.json``,         ``config``: reload the config (rules, function env,
``fnserve.toml``, ``pyproject.toml``,      entrypoint) and rebuild the project model
``.env``, ``.env.*``
``*requirements*.txt`` (any folder),       ``deps``: reinstall in the background, then restart
``Pipfile[.lock]``, ``uv.lock``,           the workers whose environment changed (the names
``.python-version``, ``pyproject.toml``,   are ``deps.manifests.is_dependency_file``'s)
``fnserve.toml``
``*.py``                                   ``code``: rebuild the route table; restart the
                                           functions that are, or import, the file; also
                                           ``imports`` when ``deps.affects_dependencies`` says
                                           its imports may change the requirement set (the dev
                                           server then installs new third-party imports)
anything under ``public/``                 ignored (static files are read per request)
excluded folders (``.fnserve``, ``.venv``,  ignored
``__pycache__``, ``node_modules``, ...),
editor swap files, ``*.pyc``
=========================================  ==================================================

Two settings narrow what is watched (``--reload-dir``, ``--reload-exclude``): ``dirs`` (project
folders; when given, only they are watched recursively, plus the files at the project root) and
``exclude`` (globs matched against the project-relative path, the file name and each folder name:
``tests``, ``*.log``, ``data/*``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from watchfiles import Change, DefaultFilter, awatch

from fnserve.deps import affects_dependencies
from fnserve.deps.manifests import is_dependency_file
from fnserve.project.layout import is_excluded_dir

LOG = logging.getLogger("fnserve.reload")

CONFIG_FILES = frozenset({"vercel.json", "edgeone.json", "fnserve.toml", "pyproject.toml"})
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".tmp", "~")


@dataclass
class Plan:
    """One batch of changes, classified. Paths are absolute; ``code`` keeps the change kind
    (``"added"``, ``"modified"``, ``"deleted"``) because added/deleted files change routes;
    ``imports``: the saved (not deleted) ``.py`` files whose imports may change the requirement
    set (``deps.affects_dependencies``: outside excluded folders)."""

    config: list[Path] = field(default_factory=list)
    deps: list[Path] = field(default_factory=list)
    code: list[tuple[str, Path]] = field(default_factory=list)
    imports: list[Path] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.config or self.deps or self.code)

    def describe(self, root: Path) -> str:
        """``api/hello.py, vercel.json`` — the files, relative, deduplicated, in order."""
        seen: list[str] = []
        for p in [*self.config, *self.deps, *(p for _, p in self.code)]:
            rel = _rel(root, p)
            if rel not in seen:
                seen.append(rel)
        return ", ".join(seen)


def _rel(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return str(path)


class Reloader:
    """Watch ``root`` and apply each batch. ``apply(plan) -> line | None`` does the work and
    returns what to print (one line per reload); exceptions from it are logged, never raised
    (dev must not exit on user error). ``dirs``: project-relative folders to watch instead of all
    (``reload_dir``); ``exclude``: globs of files to ignore (``reload_exclude``; module doc);
    ``env_files``: the ``env_file`` entries, classified as ``config`` like ``.env``."""

    def __init__(
        self,
        root: Path,
        apply: Callable[[Plan], Awaitable[str | None]],
        *,
        emit: Callable[[str], None] | None = None,
        dirs: Sequence[str] = (),
        exclude: Sequence[str] = (),
        env_files: Sequence[str] = (),
    ) -> None:
        self.root = root.resolve()
        self.apply = apply
        self.emit = emit or LOG.info
        chosen = tuple((self.root / d).resolve() for d in dirs)
        self.dirs = () if self.root in chosen else chosen  # "." means the whole project
        self.exclude = tuple(exclude)
        self.env_files = frozenset((self.root / f).resolve() for f in env_files)
        self._default = DefaultFilter()
        self._lock: asyncio.Lock | None = None  # one batch at a time, whichever watcher saw it

    def wanted(self, change: Change, path: str) -> bool:
        """The ``watch_filter`` for ``awatch``: False for files a reload never depends on."""
        p = Path(path)
        try:
            rel = p.relative_to(self.root)
        except ValueError:
            return False
        parts = rel.parts
        if not parts or parts[0] == "public":
            return False
        if any(is_excluded_dir(d) for d in parts[:-1]) or self.excluded(rel.as_posix()):
            return False
        if self.dirs and len(parts) > 1 and not any(p.is_relative_to(d) for d in self.dirs):
            return False
        name = parts[-1]
        if name.endswith(_IGNORED_SUFFIXES) or name.startswith(".#"):
            return False
        if name.startswith(".env") or name == ".python-version":
            return True
        return self._default(change, path)

    def excluded(self, rel: str) -> bool:
        """True when the project-relative POSIX path ``rel`` matches a ``reload_exclude`` glob
        (whole path, file name, or any folder name on the way)."""
        parts = rel.split("/")
        return any(fnmatchcase(rel, pat) or any(fnmatchcase(part, pat) for part in parts) for pat in self.exclude)

    def classify(self, changes: Iterable[tuple[Change, str]]) -> Plan:
        """Sort a batch of ``(Change, absolute path)`` into a ``Plan``."""
        plan = Plan()
        for change, raw in sorted(changes, key=lambda c: c[1]):
            if not self.wanted(change, raw):
                continue
            path = Path(raw)
            name = path.name
            kind = {Change.added: "added", Change.modified: "modified", Change.deleted: "deleted"}[change]
            if name in CONFIG_FILES or name.startswith(".env") or path.resolve() in self.env_files:
                plan.config.append(path)
            if is_dependency_file(name):
                plan.deps.append(path)
            if name.endswith(".py"):
                plan.code.append((kind, path))
                if kind != "deleted" and affects_dependencies(self.root, path):
                    plan.imports.append(path)
        return plan

    async def step(self, changes: Iterable[tuple[Change, str]]) -> str | None:
        """Classify and apply one batch; returns the printed line (None when nothing to do)."""
        plan = self.classify(changes)
        if plan.empty:
            return None
        if self._lock is None:
            self._lock = asyncio.Lock()
        started = time.perf_counter()
        try:
            async with self._lock:
                line = await self.apply(plan)
        except Exception as exc:
            LOG.exception("reload after %s failed", plan.describe(self.root))
            line = f"reload: {plan.describe(self.root)} changed; reload failed: {exc}"
        if line:
            self.emit(line)
        LOG.debug("reload took %.1f ms", (time.perf_counter() - started) * 1000)
        return line

    def watch_dirs(self) -> list[Path]:
        """The top-level folders watched recursively: all but excluded ones (``.venv``,
        ``.fnserve``, ``node_modules``, dot-folders, ...) and ``public/`` — so no inotify watch is
        ever put on a virtualenv's site-packages inside the project. With ``dirs``: those that
        exist. Folders matching a ``reload_exclude`` glob are not watched at all."""
        if self.dirs:
            return [d for d in self.dirs if d.is_dir() and d != self.root]
        try:
            entries = sorted(self.root.iterdir())
        except OSError:
            return []
        return [d for d in entries if d.is_dir() and d.name != "public" and not is_excluded_dir(d.name)
                and not self.excluded(d.name)]

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set: the project root itself, not recursively (``vercel.json``,
        ``.env``, folders coming and going), and each folder of ``watch_dirs`` recursively, one
        watcher each. A new top-level folder gets its own watcher, and the files already in it
        are treated as added (nothing written before its watcher started is missed); a removed
        one's watcher stops. Batches are grouped for 30 ms after the last change."""
        watchers: dict[Path, tuple[asyncio.Task[None], asyncio.Event]] = {}
        loop = asyncio.get_running_loop()

        def start(folder: Path) -> None:
            own = asyncio.Event()
            watchers[folder] = (loop.create_task(self._watch(folder, stop, own)), own)

        for folder in self.watch_dirs():
            start(folder)
        try:
            async for changes in self._awatch(self.root, stop, recursive=False):
                current = self.watch_dirs()
                for folder in [d for d in current if d not in watchers]:
                    start(folder)
                    await asyncio.sleep(0.05)  # let its watcher start, then pick up what is there
                    changes |= {(Change.added, str(f)) for f in _files(folder)}
                for folder in [d for d in watchers if d not in current]:
                    watchers.pop(folder)[1].set()
                await self.step(changes)
        finally:
            for task, own in watchers.values():
                own.set()
                task.cancel()
            await asyncio.gather(*(task for task, _ in watchers.values()), return_exceptions=True)

    async def _watch(self, folder: Path, stop: asyncio.Event, own: asyncio.Event) -> None:
        either = _AnyEvent(stop, own)
        async for changes in self._awatch(folder, either, recursive=True):
            await self.step(changes)

    def _awatch(self, path: Path, stop: Any, *, recursive: bool) -> Any:
        return awatch(
            path, watch_filter=self.wanted if recursive else None, stop_event=stop, step=30,
            debounce=800, recursive=recursive, ignore_permission_denied=True,
        )


class _AnyEvent:
    """Set when any of ``events`` is set (what watchfiles needs of a ``stop_event``)."""

    def __init__(self, *events: asyncio.Event) -> None:
        self.events = events

    def is_set(self) -> bool:
        return any(e.is_set() for e in self.events)

    def set(self) -> None:
        """watchfiles calls this when its watch is cancelled: stop this watcher only."""
        self.events[-1].set()


def _files(folder: Path) -> list[Path]:
    """Every file below ``folder``, skipping excluded folders (bounded by what a person writes)."""
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not is_excluded_dir(d)]
        out.extend(Path(dirpath, f) for f in filenames)
    return out
