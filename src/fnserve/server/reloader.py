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

The line a reload prints (``reload_line(ReloadFacts)``) names the files that changed and what
became of each function they concern, with the cause, never a generic "environment changed"::

    reload: api/app.py changed → api/app.py ready in 41 ms [55 ms]
    warning: reload: api/app.py changed → api/app.py: syntax error: expected ':' at line 8; its routes answer 500 until it is fixed [12 ms]
    reload: api/app.py changed → api/app.py ready in 40 ms (syntax error fixed) [52 ms]
    reload: .env changed → environment changed for api/a.py, api/b.py: new instances get it [80 ms]
    reload: requirements.txt changed → installing dependencies in the background [8 ms]

A reload that leaves a function or the project broken is a warning (``warning: `` in front: the
dev server's ``say`` logs it at WARNING, so ``--quiet`` shows it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from watchfiles import Change, DefaultFilter, awatch

from fnserve.deps import affects_dependencies
from fnserve.deps.manifests import is_dependency_file
from fnserve.project.layout import is_excluded_dir
from fnserve.project.types import Problem
from fnserve.server.logs import speaker

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


@dataclass
class ReloadFacts:
    """What one reload of ``fnserve dev`` did, for its line (``reload_line``). Function ids
    throughout. ``what``: the files that changed (``Plan.describe``); ``results``: ``Supervisor.
    restart``'s per function (an object with ``ready_ms`` and ``error``; None: no result);
    ``changed``: id → ``supervisor.target.restart_reason`` of the functions ``Supervisor.update`` restarted;
    ``file_errors_before`` / ``file_errors_now``: id → the ``Problem`` of a function file that
    does not parse; ``load_errors_before`` / ``load_errors_now``: id → the remembered load error;
    ``added`` / ``removed``: ids; ``deps``: the dependency note or None; ``problem``: the
    project-wide error or None; ``ms``: how long the reload took."""

    what: str
    results: Mapping[str, Any] = field(default_factory=dict)
    changed: Mapping[str, str] = field(default_factory=dict)
    file_errors_before: Mapping[str, Problem] = field(default_factory=dict)
    file_errors_now: Mapping[str, Problem] = field(default_factory=dict)
    load_errors_before: Mapping[str, Any] = field(default_factory=dict)
    load_errors_now: Mapping[str, Any] = field(default_factory=dict)
    added: Sequence[str] = ()
    removed: Sequence[str] = ()
    deps: str | None = None
    problem: str | None = None
    ms: float = 0.0


def _first_line(error: Any) -> str:
    text = str(getattr(error, "message", None) or error or type(error).__name__).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _file_error(problem: Problem) -> str:
    at = f" at line {problem.line}" if problem.line else ""
    return f"{problem.message}{at}; its routes answer 500 until it is fixed"


def _function_phrase(facts: ReloadFacts, fid: str) -> tuple[str, bool]:
    """What became of one function: (phrase, whether it is left broken)."""
    now, before = facts.file_errors_now.get(fid), facts.file_errors_before.get(fid)
    if now is not None:
        still = "still " if before is not None and before.message == now.message else ""
        return f"{fid}: {still}{_file_error(now)}", True
    fixed = "syntax error fixed" if before is not None else "load error fixed" if facts.load_errors_before.get(fid) else ""
    result = facts.results.get(fid)
    if fid in facts.results:
        if result is not None and result.error is not None:
            return f"{fid} FAILED to load: {_first_line(result.error)}", True
        if result is not None and result.ready_ms is not None:
            return f"{fid} ready in {result.ready_ms:.0f} ms" + (f" ({fixed})" if fixed else ""), False
        return f"{fid} (idle, loads on next request{'; ' + fixed if fixed else ''})", False
    if facts.load_errors_now.get(fid) is not None:
        return f"{fid} FAILED to load: {_first_line(facts.load_errors_now[fid])}", True
    return f"{fid} reloaded" + (f" ({fixed})" if fixed else ""), False


def _some(ids: Sequence[str]) -> str:
    names = sorted(ids)
    return ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")


def reload_line(facts: ReloadFacts) -> str:
    """The one line printed for a reload (module docstring): ``reload: <files> changed → <what
    happened> [N ms]``, with ``warning: `` in front when it leaves a function or the project broken."""
    trouble = False
    parts: list[str] = []
    gone = set(facts.removed)
    code = {fid for fid, why in facts.changed.items() if why == "code"} - set(facts.added)
    touched = set(facts.results) | code | (set(facts.file_errors_now) ^ set(facts.file_errors_before))
    for fid in sorted(touched - gone - set(facts.added)):
        phrase, broken = _function_phrase(facts, fid)
        parts.append(phrase)
        trouble = trouble or broken
    wording = {"python": "new Python environment for {}", "environment": "environment changed for {}: new instances get it",
               "settings": "settings changed for {}: restarted"}
    for why, text in wording.items():
        ids = [fid for fid, reason in facts.changed.items() if reason == why]
        if ids:
            parts.append(text.format(_some(ids)))
    for fid in sorted(facts.added):
        error = facts.file_errors_now.get(fid)
        parts.append(f"new function {fid}" + (f" ({_file_error(error)})" if error is not None else ""))
        trouble = trouble or error is not None
    parts += [f"removed {fid}" for fid in sorted(gone)]
    if facts.deps:
        parts.append(facts.deps)
    if facts.problem:
        parts.append("ERROR: " + facts.problem)
        trouble = True
    summary = "; ".join(parts) or "nothing to restart"
    return f"{'warning: ' if trouble else ''}reload: {facts.what} changed → {summary} [{facts.ms:.0f} ms]"


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
        self.emit = emit or speaker(LOG)  # "warning: reload: ..." at WARNING
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
            line = f"error: reload: {plan.describe(self.root)} changed; reload failed: {exc}"
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
