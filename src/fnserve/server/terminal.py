"""How ``fnserve dev`` and ``fnserve start`` look on a terminal: whether to colour, and the styles.

``use_colour(stream, environ)`` decides once, at start (``server.logs.install``), in this order
(CPython 3.13's own rule for its tracebacks, and https://no-color.org):

1. ``NO_COLOR`` set to a non-empty value (any value, ``0`` included): no colour;
2. ``FORCE_COLOR`` set to a non-empty value: colour even when the output is not a terminal (a CI
   log viewer, ``| less -R``); ``0`` or ``false`` mean no colour;
3. ``TERM=dumb``: no colour;
4. otherwise colour exactly when ``stream`` is a TTY.

JSON log lines never have colour, whatever these say (``server.logs.JsonFormatter`` has none).

What is styled (``TextFormatter``): the URL a command listens on (bold cyan), ``warning:`` (bold
yellow) and ``error:`` (bold red) in front of messages, the status of access lines (2xx green,
3xx cyan, 4xx yellow, 5xx and none red), time stamps and request ids (dim), a function's output
prefix (magenta for stdout, red for stderr).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

__all__ = ["BOLD_CYAN", "DIM", "MAGENTA", "RED", "RESET", "level_prefix", "status_colour", "use_colour"]

RESET = "\x1b[0m"
DIM = "\x1b[2m"
MAGENTA = "\x1b[35m"
RED = "\x1b[31m"
BOLD_CYAN = "\x1b[1;36m"
_BOLD_YELLOW = "\x1b[1;33m"
_BOLD_RED = "\x1b[1;31m"
_OFF = ("0", "false")


def use_colour(stream: Any, environ: Mapping[str, str]) -> bool:
    """True when lines written to ``stream`` get ANSI colours (the module docstring's order).
    ``environ``: where ``NO_COLOR``, ``FORCE_COLOR`` and ``TERM`` are read (the command's
    environment, passed down from its entry point)."""
    if environ.get("NO_COLOR"):
        return False
    force = environ.get("FORCE_COLOR")
    if force:
        return force.strip().lower() not in _OFF
    if environ.get("TERM") == "dumb":
        return False
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def status_colour(status: int) -> str:
    """The ANSI colour of an HTTP status (0: no response was sent)."""
    if status >= 500 or status == 0:
        return "\x1b[31m"  # red
    if status >= 400:
        return "\x1b[33m"  # yellow
    if status >= 300:
        return "\x1b[36m"  # cyan
    return "\x1b[32m"  # green


def level_prefix(levelno: int, colour: bool) -> str:
    """What goes in front of a message of level ``levelno``: nothing for INFO, else ``"warning:
    "``, ``"error: "``, ``"critical: "``, ``"debug: "``, styled when ``colour``."""
    if levelno == logging.INFO:
        return ""
    name = logging.getLevelName(levelno).lower()
    if not colour:
        return f"{name}: "
    style = _BOLD_RED if levelno >= logging.ERROR else _BOLD_YELLOW if levelno >= logging.WARNING else DIM
    return f"{style}{name}:{RESET} "
