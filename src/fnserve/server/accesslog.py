"""Access log and function-output formatting (issue 4, "Output a person reads").

The front app emits one record per request on the ``fnserve.access`` logger with the fields
``method``, ``path`` (with query), ``status`` (int; 0 if the client left before a response),
``duration_ms`` (float) and ``function`` (the function id, or ``static``/``redirect``/``-``).
Formatting is the business of whoever installs a handler (``fnserve dev`` does, see
``install_dev_handlers``); library code never configures the root logger.

Function stdout/stderr lines are re-emitted by the supervisor on ``fnserve.function.<id>``;
``FunctionFormatter`` prefixes each with the function's route, looked up through a callable so
that the prefix follows route-table reloads.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable
from typing import TextIO

ACCESS = logging.getLogger("fnserve.access")
FUNCTION_LOGGER = "fnserve.function"

_RESET = "\x1b[0m"
_DIM = "\x1b[2m"


def _status_colour(status: int) -> str:
    if status >= 500 or status == 0:
        return "\x1b[31m"  # red
    if status >= 400:
        return "\x1b[33m"  # yellow
    if status >= 300:
        return "\x1b[36m"  # cyan
    return "\x1b[32m"  # green


def log_request(method: str, path: str, status: int, started: float, function: str) -> None:
    """Emit one access record. ``started``: ``time.perf_counter()`` at request start."""
    if not ACCESS.isEnabledFor(logging.INFO):
        return
    duration_ms = (time.perf_counter() - started) * 1000.0
    # Built from a prototype (pid, thread and the like, taken once; records are made on the event
    # loop thread only), as server.logfmt.access_record: Logger.info() would walk the stack
    # (findCaller) and LogRecord.__init__ costs ~2.3 µs more per request.
    record = _new_record(logging.LogRecord)
    fields = record.__dict__
    fields.update(_PROTO)
    now = time.time()
    fields["created"] = now
    fields["msecs"] = (now - int(now)) * 1000.0
    fields["relativeCreated"] = (now - _START) * 1000.0
    fields["args"] = (method, path, status, duration_ms, function)
    fields["method"], fields["path"], fields["status"] = method, path, status
    fields["duration_ms"], fields["function"] = duration_ms, function
    ACCESS.handle(record)


_new_record = object.__new__
_START = time.time()
_PROTO = dict(logging.LogRecord(ACCESS.name, logging.INFO, __file__, 0, "%s %s %d %.1fms %s", None, None).__dict__)


class AccessFormatter(logging.Formatter):
    """``HH:MM:SS METHOD /path STATUS 12.3ms function``, the status coloured when ``colour``."""

    def __init__(self, colour: bool) -> None:
        super().__init__()
        self.colour = colour
        self._second = -1
        self._stamp = ""

    def format(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # strftime once per second, not per request
            self._second, self._stamp = second, time.strftime("%H:%M:%S", time.localtime(second))
        stamp = self._stamp
        status = getattr(record, "status", None)
        if status is None:
            return f"{stamp} {record.getMessage()}"
        st = str(status) if status else "---"
        if self.colour:
            st = f"{_status_colour(status)}{st}{_RESET}"
            stamp = f"{_DIM}{stamp}{_RESET}"
        return (
            f"{stamp} {record.method} {record.path} {st} "  # type: ignore[attr-defined]
            f"{record.duration_ms:.1f}ms {record.function}"  # type: ignore[attr-defined]
        )


class JsonAccessFormatter(logging.Formatter):
    """One JSON object per request (``log_format = "json"``): ``time`` (ISO 8601, UTC),
    ``method``, ``path``, ``status``, ``duration_ms``, ``function``."""

    def format(self, record: logging.LogRecord) -> str:
        if getattr(record, "status", None) is None:
            return json.dumps({"time": _iso(record.created), "message": record.getMessage()})
        return json.dumps({
            "time": _iso(record.created),
            "method": record.method,  # type: ignore[attr-defined]
            "path": record.path,  # type: ignore[attr-defined]
            "status": record.status,  # type: ignore[attr-defined]
            "duration_ms": round(record.duration_ms, 3),  # type: ignore[attr-defined]
            "function": record.function,  # type: ignore[attr-defined]
        })


def _iso(created: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{int(created % 1 * 1000):03d}Z"


class FunctionFormatter(logging.Formatter):
    """Prefix a function's output line with its route: ``[/api/users/[id]] the line``.

    ``route_of``: function id → route pattern (or None when unknown; the id is shown then).
    """

    def __init__(self, route_of: Callable[[str], str | None], colour: bool) -> None:
        super().__init__()
        self.route_of = route_of
        self.colour = colour

    def format(self, record: logging.LogRecord) -> str:
        fid = getattr(record, "function", None) or record.name[len(FUNCTION_LOGGER) + 1 :]
        label = self.route_of(fid) or fid
        prefix = f"[{label}]"
        if self.colour:
            prefix = f"\x1b[35m{prefix}{_RESET}"
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return "\n".join(f"{prefix} {line}" for line in text.splitlines() or [""])


def install_dev_handlers(
    route_of: Callable[[str], str | None], stream: TextIO | None = None, *, json_lines: bool = False
) -> list[tuple[logging.Logger, logging.Handler]]:
    """Attach stream handlers for ``fnserve.access`` (text, coloured on a TTY, or JSON lines
    when ``json_lines``), ``fnserve.function`` and the rest of ``fnserve`` (messages as is).
    For the ``dev`` entry point only. Returns what was installed so the caller can remove it."""
    stream = stream or sys.stdout
    colour = stream.isatty()
    installed: list[tuple[logging.Logger, logging.Handler]] = []
    access: logging.Formatter = JsonAccessFormatter() if json_lines else AccessFormatter(colour)
    for name, formatter in (
        ("fnserve.access", access),
        (FUNCTION_LOGGER, FunctionFormatter(route_of, colour)),
        ("fnserve", logging.Formatter("%(message)s")),
    ):
        logger = logging.getLogger(name)
        handler = logging.StreamHandler(stream)
        handler.setFormatter(formatter)
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        if name != "fnserve":
            logger.propagate = False
        installed.append((logger, handler))
    return installed
