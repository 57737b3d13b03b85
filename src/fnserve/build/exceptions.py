"""The errors of ``fnserve build`` and ``fnserve start --from`` (both ``FnserveError``: exit 2).

::

    FnserveError (fnserve.errors)
    └── BuildError                a build step failed: ``.step`` ("buildCommand", "output", ...)
        └── OutputFormatError     an output this fnserve cannot serve: ``.output``, ``.found``
"""

from __future__ import annotations

from pathlib import Path

from fnserve.errors import FnserveError


class BuildError(FnserveError):
    """A build step failed. ``step``: what was running (``"buildCommand"``, ``"installCommand"``,
    ``"project"``, ``"output"``); ``exit_status``: the command's exit status, when one ran."""

    def __init__(self, step: str, message: str, hint: str | None = None, *, exit_status: int | None = None) -> None:
        self.step, self.exit_status = step, exit_status
        super().__init__(message, hint)


class OutputFormatError(BuildError):
    """``output`` is not a build output this fnserve knows: no ``manifest.json``, unreadable, or
    a ``format`` other than the known ones (``found``: the value read, None when missing)."""

    def __init__(self, output: Path, problem: str, found: object = None) -> None:
        self.output, self.found = output, found
        super().__init__("output", f"{output}: {problem}",
                         "build it again with this fnserve: fnserve build <project> --out " + str(output))
