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
``requirements.txt`` (any folder),         ``deps``: reinstall in the background, then restart
``Pipfile[.lock]``, ``uv.lock``,           the workers whose environment changed
``.python-version``, ``pyproject.toml``
``*.py``                                   ``code``: rebuild the route table; restart the
                                           functions that are, or import, the file
anything under ``public/``                 ignored (static files are read per request)
excluded folders (``.fnserve``, ``.venv``,  ignored
``__pycache__``, ``node_modules``, ...),
editor swap files, ``*.pyc``
=========================================  ==================================================
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Awaitable, Callable, Iterable

from watchfiles import Change, DefaultFilter, awatch

from fnserve.project.layout import is_excluded_dir

LOG = logging.getLogger("fnserve.reload")

CONFIG_FILES = frozenset({"vercel.json", "edgeone.json", "fnserve.toml", "pyproject.toml"})
DEPS_FILES = frozenset({"requirements.txt", "Pipfile", "Pipfile.lock", "uv.lock", ".python-version", "pyproject.toml"})
_IGNORED_SUFFIXES = (".pyc", ".pyo", ".swp", ".swx", ".tmp", "~")


@dataclass
class Plan:
    """One batch of changes, classified. Paths are absolute; ``code`` keeps the change kind
    (``"added"``, ``"modified"``, ``"deleted"``) because added/deleted files change routes."""

    config: list[Path] = field(default_factory=list)
    deps: list[Path] = field(default_factory=list)
    code: list[tuple[str, Path]] = field(default_factory=list)

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
    (dev must not exit on user error)."""

    def __init__(
        self,
        root: Path,
        apply: Callable[[Plan], Awaitable[str | None]],
        *,
        emit: Callable[[str], None] | None = None,
    ) -> None:
        self.root = root.resolve()
        self.apply = apply
        self.emit = emit or LOG.info
        self._default = DefaultFilter()

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
        if any(is_excluded_dir(d) for d in parts[:-1]):
            return False
        name = parts[-1]
        if name.endswith(_IGNORED_SUFFIXES) or name.startswith(".#"):
            return False
        if name.startswith(".env") or name == ".python-version":
            return True
        return self._default(change, path)

    def classify(self, changes: Iterable[tuple[Change, str]]) -> Plan:
        """Sort a batch of ``(Change, absolute path)`` into a ``Plan``."""
        plan = Plan()
        for change, raw in sorted(changes, key=lambda c: c[1]):
            if not self.wanted(change, raw):
                continue
            path = Path(raw)
            name = path.name
            kind = {Change.added: "added", Change.modified: "modified", Change.deleted: "deleted"}[change]
            if name in CONFIG_FILES or name.startswith(".env"):
                plan.config.append(path)
            if name in DEPS_FILES or (name.startswith("requirements") and name.endswith(".txt")):
                plan.deps.append(path)
            if name.endswith(".py"):
                plan.code.append((kind, path))
        return plan

    async def step(self, changes: Iterable[tuple[Change, str]]) -> str | None:
        """Classify and apply one batch; returns the printed line (None when nothing to do)."""
        plan = self.classify(changes)
        if plan.empty:
            return None
        started = time.perf_counter()
        try:
            line = await self.apply(plan)
        except Exception as exc:  # noqa: BLE001 - keep dev alive
            LOG.exception("reload after %s failed", plan.describe(self.root))
            line = f"reload: {plan.describe(self.root)} changed; reload failed: {exc}"
        if line:
            self.emit(line)
        LOG.debug("reload took %.1f ms", (time.perf_counter() - started) * 1000)
        return line

    async def run(self, stop: asyncio.Event) -> None:
        """Watch until ``stop`` is set. Batches are grouped for 30 ms after the last change."""
        async for changes in awatch(
            self.root, watch_filter=self.wanted, stop_event=stop, step=30, debounce=800,
            recursive=True, ignore_permission_denied=True,
        ):
            await self.step(changes)
