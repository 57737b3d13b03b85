"""Progress display for the dependency step (issue 5 item 7), for ``fnserve dev`` and ``fnserve deps``.

``ensure_env`` calls its ``progress`` callable only when there is work (a new env); a reused env
prints nothing. ``ConsoleProgress`` turns those calls into a rich status spinner plus one log line
per step, on stderr::

    with ConsoleProgress() as progress:
        env = ensure_env(project_dir, config, progress=progress)
"""

from __future__ import annotations

from typing import Any


class ConsoleProgress:
    """A ``progress`` callable backed by ``rich``. ``console``: a ``rich.console.Console``
    (default: one on stderr); ``prefix``: put before each line. Thread-safe enough for
    ``ensure_env_async`` (rich's status is)."""

    def __init__(self, console: Any = None, prefix: str = "deps") -> None:
        if console is None:
            from rich.console import Console

            console = Console(stderr=True)
        self.console, self.prefix = console, prefix
        self._status: Any = None

    def __call__(self, message: str) -> None:
        self.console.log(f"[bold]{self.prefix}[/bold] {message}", highlight=False)
        if message.startswith("environment ready"):
            self.close()
        elif self._status is None:
            self._status = self.console.status(message)
            self._status.start()
        else:
            self._status.update(message)

    def close(self) -> None:
        """Stop the spinner (idempotent)."""
        if self._status is not None:
            self._status.stop()
            self._status = None

    def __enter__(self) -> ConsoleProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
