"""fnserve's exception tree. Every error says what was found and what to do.

::

    FnserveError                      base; ``.hint`` says what to do
    ├── ConfigError                   a bad setting: ``.source`` (file or flag), ``.key``, ``.allowed``
    ├── ProjectError                  the project cannot be modelled as a whole
    │   ├── DuplicateRouteError       two files produce one route: ``.route``, ``.files``
    │   └── NoEntrypointError         zero-config found nothing: ``.candidates``
    ├── DependencyError               resolving or installing requirements failed
    └── WorkerError                   a worker process could not be started or died

Errors met inside a function's own process (load failures) live in ``fnserve.runtime.errors``
because the runtime may import nothing from the rest of fnserve. The CLI maps ``FnserveError``
to a message and exit code 2 (``fnserve.cli``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence


class FnserveError(Exception):
    """Base class. ``message`` says what was found; ``hint`` says what to do."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message


class ConfigError(FnserveError):
    """A setting is unknown or has a bad value.

    ``source``: where it came from (``"vercel.json"``, ``"--port"``, ``"FNSERVE_PORT"``);
    ``key``: the setting's name or JSON path; ``allowed``: what would be accepted.
    """

    def __init__(self, source: str, key: str, problem: str, allowed: str | None = None) -> None:
        self.source, self.key, self.problem, self.allowed = source, key, problem, allowed
        super().__init__(f"{source}: {key}: {problem}", f"allowed: {allowed}" if allowed else None)


class ProjectError(FnserveError):
    """The project as a whole cannot be served."""


class DuplicateRouteError(ProjectError):
    """Two entrypoints compile to the same route (SPEC §3.2). ``files``: project-relative paths."""

    def __init__(self, route: str, files: Sequence[str]) -> None:
        self.route, self.files = route, tuple(files)
        super().__init__(
            f"route {route} is produced by both {files[0]} and {files[1]}",
            "rename or remove one of the two files",
        )


class NoEntrypointError(ProjectError):
    """Zero-config detection (SPEC §3.3) found no application. ``candidates``: files that export something."""

    def __init__(self, root: Path, candidates: Sequence[str], hint: str) -> None:
        self.root, self.candidates = root, tuple(candidates)
        found = ", ".join(candidates) if candidates else "no file exporting app, application or handler"
        super().__init__(f"{root}: no entrypoint found (looked at: {found})", hint)


class DependencyError(FnserveError):
    """Requirements could not be merged, resolved or installed."""


class WorkerError(FnserveError):
    """A worker process could not be started or stopped."""
