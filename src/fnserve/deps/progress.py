"""Installs a person can watch (issue 13 item 3): uv's output turned into progress lines, and the
live line of a command run on a terminal.

uv (run through ``deps.uv.Uv.run(on_line=...)``) reports on stderr, one line per step::

    Resolved 8 packages in 120ms        → "resolved 8 packages in 120ms"
    Downloading numpy (16.1MiB)         → "downloading numpy (16.1MiB)"
    Prepared 3 packages in 1.21s        → "prepared 3 packages in 1.21s"
    Installed 8 packages in 30ms        → "installed 8 packages in 30ms"
     + flask==3.0.3                     → "+ flask==3.0.3"
     - six==1.17.0                      → "- six==1.17.0"

``uv_note(line)`` makes that translation (None for noise and for error text, which the
``DependencyError`` reports). Every message of the dependency step is a plain ``str`` given to
the caller's ``progress`` callback (``Callable[[str], None]``): ``fnserve dev`` and ``fnserve
start`` send it through their log stack (text, or JSON lines with ``log_format = json``),
``fnserve deps`` and ``fnserve build`` print it. A message may be a ``Note``: a ``str`` that also
says what the install waits for next (``Note.waiting``), which the live line shows.

``command_progress(stream, prefix)`` is what a command uses: on a terminal (``rich``: honours
``NO_COLOR``, ``FORCE_COLOR``, ``TERM=dumb``) a ``LiveLine`` — each message printed as a line,
under them a spinner with what is awaited and the seconds elapsed; elsewhere ``PlainLines``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TextIO

Progress = Callable[[str], None]


class Note(str):
    """A progress message (``str``) with ``waiting``: what the install does next ("downloading
    and building packages"), or None. Formatting it (``f"deps: {note}"``) gives a plain ``str``."""

    waiting: str | None

    def __new__(cls, text: str, waiting: str | None = None) -> Note:
        note = super().__new__(cls, text)
        note.waiting = waiting
        return note


_STEP = re.compile(r"(Resolved|Prepared|Installed|Uninstalled|Audited) (\d+) packages? in (\S+)")
_CHANGE = re.compile(r" ([+\-~]) (\S.*)")
_WAITING = {"Resolved": "downloading and building what is not cached", "Prepared": "installing",
            "Uninstalled": "installing", "Installed": "finishing the environment",
            "Audited": "finishing the environment"}
_WORDS = {"Resolved": "resolved", "Prepared": "prepared", "Installed": "installed", "Uninstalled": "removed",
          "Audited": "checked"}


def uv_note(line: str) -> Note | None:
    """The progress message for one stderr line of ``uv pip install`` / ``uv venv``, or None
    (noise such as ``Using Python ... environment``, and error text). See the module docstring."""
    step = _STEP.match(line)
    if step:
        word, count, took = step.groups()
        text = f"{_WORDS[word]} {count} package{'' if count == '1' else 's'} in {took}"
        if word == "Audited":
            text += " (all installed already)"
        return Note(text, _WAITING.get(word))
    change = _CHANGE.match(line)
    if change:
        return Note(f"{change.group(1)} {change.group(2)}", "finishing the environment")
    stripped = line.strip()
    for prefix in ("Downloading ", "Downloaded ", "Building ", "Built "):
        if stripped.startswith(prefix):
            return Note(prefix.lower() + stripped[len(prefix):], "downloading and building what is not cached")
    if stripped.startswith("warning:"):
        return Note(f"uv {stripped}")
    return None


def install_note(names: Sequence[str], seeded: bool) -> Note:
    """The message that starts an install: ``installing 2 requirement(s): flask, httpx``."""
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    seed = " (seeded from the previous environment)" if seeded else ""
    return Note(f"installing {len(names)} requirement(s): {shown}{seed}", f"resolving {shown}")


class PlainLines:
    """``Progress`` writing ``prefix + message`` lines on ``stream`` (a pipe, a file, a log)."""

    def __init__(self, stream: TextIO, prefix: str = "") -> None:
        self.stream, self.prefix = stream, prefix
        self._lock = threading.Lock()  # messages come from the install's thread too

    def __call__(self, message: str) -> None:
        with self._lock:
            self.stream.write(f"{self.prefix}{message}\n")
            self.stream.flush()


class LiveLine:
    """``Progress`` for a terminal (``rich``): every message is printed as a line, and under them
    a spinner shows what is awaited (the last ``Note.waiting``, else the last message) and the
    seconds since it started. Use it as a context manager (the spinner runs inside).
    ``console``: a ``rich.console.Console``; ``echo``: False when the messages are printed by
    someone else (``fnserve dev``'s log lines) and only the spinner line follows them."""

    def __init__(self, console: Any, prefix: str = "", *, echo: bool = True) -> None:
        from rich.live import Live
        from rich.spinner import Spinner

        self.console, self.prefix, self.echo = console, prefix, echo
        self.status = "preparing"
        self.since = time.monotonic()
        self.live = Live(Spinner("dots", text=self), console=console, transient=True, refresh_per_second=8)

    def __rich__(self) -> Any:
        from rich.text import Text

        return Text(f"{self.prefix}{self.status} ({time.monotonic() - self.since:.0f} s)", style="dim",
                    no_wrap=True, overflow="ellipsis")

    def __call__(self, message: str) -> None:
        if self.echo:
            self.console.print(f"{self.prefix}{message}", markup=False, highlight=False, soft_wrap=True)
        waiting = getattr(message, "waiting", None) or message
        if waiting != self.status:
            self.status, self.since = waiting, time.monotonic()

    def __enter__(self) -> LiveLine:
        self.live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.stop()


def live_console(stream: Any) -> Any | None:
    """A ``rich.console.Console`` on ``stream`` when it is a terminal a live line can be drawn
    on (a TTY, not ``TERM=dumb``), else None (``rich`` is not even imported then)."""
    isatty = getattr(stream, "isatty", None)
    if not (isatty and isatty()):
        return None
    from rich.console import Console

    console = Console(file=stream, soft_wrap=True)
    return console if console.is_terminal and not console.is_dumb_terminal else None


@contextmanager
def command_progress(stream: TextIO, prefix: str = "") -> Iterator[Progress]:
    """The ``Progress`` of a command printing on ``stream``: a ``LiveLine`` when ``stream`` is a
    terminal (``live_console``), else ``PlainLines``. ``prefix``: put before each message
    (``"deps: "``)."""
    console = live_console(stream)
    if console is None:
        yield PlainLines(stream, prefix)
        return
    with LiveLine(console, prefix) as live:
        yield live
