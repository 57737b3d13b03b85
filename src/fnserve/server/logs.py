"""The log output of ``fnserve dev`` and ``fnserve start``: text or JSON lines (``--log-format``).

Records come from named loggers only (STYLE habit 9); ``install()``, called by both commands'
entry points, puts ONE handler (on stdout, flushed in batches) on the ``fnserve`` logger tree at
INFO and on ``uvicorn`` at WARNING, none propagating to the root logger (never configured here);
the message a command exits with goes to stderr in the same format (``LogOutput.exit_error``):

- ``fnserve.access``: one record per request, built by ``access_record`` with the fields
  ``request_id`` (``"-"``: none, without ``observe.Observed`` in front), ``method``, ``path``
  (decoded path, then ``?`` and the raw query), ``status`` (int; 0: the client left before a
  response), ``duration_ms`` (float), ``function`` (id, or ``static``/``redirect``/``-``...),
  ``instance`` (worker pid or None), ``cold`` (bool, None when unknown or no function ran);
  ``fnserve.access`` holds the handler itself (no walk up the logger tree per request);
- ``fnserve.function.<id>``: a function's stdout/stderr lines (the supervisor sets ``function``,
  ``pid``, ``stream``);
- anything else under ``fnserve`` (start-up banner, route table, reloads, errors) and uvicorn's
  warnings: messages.

JSON (the same in both commands): one object per line with ``time`` (RFC 3339, UTC, ms),
``level``, ``logger``, ``msg``; access lines add the fields above, function lines ``function``,
``pid`` and ``stream``. A function's output line is not tied to a request id (instances serve
requests concurrently).

Text: ``2026-11-22T21:00:00.123Z GET /api/x 200 1.2ms api/x.py pid=123 warm id=4f2a...``;
``[api/x.py 123] a line the function printed`` on its stdout, ``[api/x.py 123 !] a line`` on its
stderr; ``warning: a message``. With ``dev=True`` (a person at a terminal) access lines are
stamped ``21:00:00`` (local time), other lines are not, function lines are prefixed with the
function's route (``[/api/users/[id]]``, ``[/api/users/[id] !]``; no pid). Colours
(``server.terminal``: statuses, ``warning:``/``error:``, the URL, function prefixes) only when
``install`` decides so from the stream and ``NO_COLOR`` / ``FORCE_COLOR``; never in JSON.
Control characters, spaces and other unprintable characters of a request path are
percent-encoded in text (``/a%0Ab``), as uvicorn's access log quotes paths: a path cannot forge a
log line or reach the terminal. JSON escapes them by itself.

How much is shown (``install``'s ``level``, ``quiet``, ``access``: the settings ``log_level``,
``quiet``, ``access_log``): ``level`` is the least level of fnserve's own messages written
(``debug``, ``info``, ``warning``, ``error``); access lines are INFO records, written only with
``access`` on and ``level`` at most ``info``; ``quiet`` is ``level`` at least ``warning`` and no
access lines. A function's output is the program's own output, not a log level: it is always
written. ``announce`` (the URL a command serves on) is always written too: it is the one line a
person needs, ``--quiet`` included. ``speaker(logger)`` gives a command's ``say(line)``: a line
starting ``error: `` or ``warning: `` is logged at that level (so ``--quiet`` keeps it).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from fnserve.server.terminal import BOLD_CYAN, DIM, MAGENTA, RED, RESET, level_prefix, status_colour, use_colour

__all__ = ["ACCESS", "LEVELS", "BatchingStreamHandler", "JsonFormatter", "LogOutput", "TextFormatter", "access_record",
           "announce", "escape_path", "install", "speaker"]

ACCESS = logging.getLogger("fnserve.access")
_ACCESS_NAME = ACCESS.name
FUNCTION_PREFIX = "fnserve.function."
# the keys of an access line in JSON, after time, level, logger, msg
ACCESS_FIELDS = ("request_id", "method", "path", "status", "duration_ms", "function", "instance", "cold")
LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
"""The values of ``log_level`` and the ``logging`` level of each."""


def access_record(
    request_id: str, method: str, path: str, status: int, duration_ms: float, function: str,
    instance: int | None, cold: bool | None,
) -> logging.LogRecord:
    """The ``fnserve.access`` record of one request (fields: module docstring). Emit it with
    ``ACCESS.handle(record)``.

    Built from a prototype (``_PROTO``: pid, thread and the like, taken once) instead of
    ``LogRecord.__init__`` (``Logger.info`` would also walk the stack): ~1 µs instead of ~6 µs on
    the hot path. Records are made on the event loop thread only."""
    record: logging.LogRecord = _new_record(logging.LogRecord)
    fields = record.__dict__
    fields.update(_PROTO)
    now = time.time()
    fields["created"] = now
    fields["msecs"] = (now - int(now)) * 1000.0
    fields["relativeCreated"] = (now - _START) * 1000.0
    fields["args"] = (method, path, status)
    fields["request_id"], fields["method"], fields["path"], fields["status"] = request_id, method, path, status
    fields["duration_ms"], fields["function"], fields["instance"], fields["cold"] = duration_ms, function, instance, cold
    return record


_new_record = object.__new__
_START = time.time()
_PROTO = dict(logging.LogRecord(ACCESS.name, logging.INFO, __file__, 0, "%s %s %d", None, None).__dict__)


def escape_path(path: str) -> str:
    """``path`` for a text log line: every character that is not printable (C0 and C1 controls,
    DEL, U+2028, bidi overrides ... — ``str.isprintable``) and the space percent-encoded as UTF-8
    (``"/a\\nb c"`` → ``"/a%0Ab%20c"``); ``%`` itself is left as is. The common case (nothing to
    escape) returns ``path`` unchanged after one C-level scan."""
    if path.isprintable() and " " not in path:
        return path
    return "".join(ch if ch.isprintable() and ch != " " else _percent(ch) for ch in path)


def _percent(ch: str) -> str:
    return "".join(f"%{byte:02X}" for byte in ch.encode("utf-8", "surrogateescape"))


class _Clock:
    """Time stamps with the strftime part cached per second: ``2026-11-22T21:00:00.123Z`` (UTC),
    or ``21:00:00`` (local time) when ``short``."""

    def __init__(self, short: bool = False) -> None:
        self.short = short
        self._second = -1
        self._stamp = ""

    def stamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = (time.strftime("%H:%M:%S", time.localtime(second)) if self.short
                           else time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        if self.short:
            return self._stamp
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """One line a person reads (module docstring). ``dev``: the terminal layout of ``fnserve
    dev``; ``colour``: ANSI colours (``server.terminal``); ``route_of``: function id → the label
    shown in front of its output lines (None: the id). A record with a ``url`` field
    (``announce``) has that URL styled."""

    def __init__(self, *, dev: bool = False, colour: bool = False,
                 route_of: Callable[[str], str | None] | None = None) -> None:
        super().__init__()
        self.dev, self.colour, self.route_of = dev, colour, route_of
        self.clock = _Clock(short=dev)
        self._second, self._stamp = -1, ""  # dev: the last second stamped and its stamp

    def format(self, record: logging.LogRecord) -> str:
        r: Any = record  # the access fields are set by access_record (or by hand, in tests)
        if r.name == _ACCESS_NAME and "status" in r.__dict__:  # the hot path: inline, no helper calls
            status: int = r.status
            path: str = r.path
            if " " in path or not path.isprintable():
                path = escape_path(path)
            created = r.created
            if self.dev and int(created) == self._second:  # dev: the clock's cached stamp, inline
                stamp = self._stamp
            else:
                stamp = self.clock.stamp(created)
                self._second, self._stamp = int(created), stamp
            shown = str(status) if status else "---"
            try:
                request_id, instance, cold = r.request_id, r.instance, r.cold
            except AttributeError:
                request_id = instance = cold = None
            extra = f" pid={instance}" if instance else ""
            if cold is not None:
                extra += " cold" if cold else " warm"
            tail = f" id={request_id}" if request_id and request_id != "-" else ""
            if self.colour:
                stamp, shown = f"{DIM}{stamp}{RESET}", f"{status_colour(status)}{shown}{RESET}"
                tail = f"{DIM}{tail}{RESET}" if tail else ""
            return f"{stamp} {r.method} {path} {shown} {r.duration_ms:.1f}ms {r.function}{extra}{tail}"
        fields = record.__dict__
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        stamp = "" if self.dev else self.clock.stamp(record.created) + " "
        if record.name.startswith(FUNCTION_PREFIX):
            fid = fields.get("function") or record.name[len(FUNCTION_PREFIX):]
            label = (self.route_of(fid) if self.route_of is not None else None) or fid
            pid = None if self.dev else fields.get("pid")
            stderr = fields.get("stream") == "stderr"
            prefix = f"[{label}{f' {pid}' if pid else ''}{' !' if stderr else ''}]"
            if self.colour:
                prefix = f"{RED if stderr else MAGENTA}{prefix}{RESET}"
            return "\n".join(f"{stamp}{prefix} {line}" for line in text.splitlines() or [""])
        if self.colour:
            url = fields.get("url")
            if url:
                text = text.replace(url, f"{BOLD_CYAN}{url}{RESET}", 1)
            if stamp:
                stamp = f"{DIM}{stamp[:-1]}{RESET} "
        return f"{stamp}{level_prefix(record.levelno, self.colour)}{text}"


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines and control characters inside values
    are escaped); keys: module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = _Clock()
        self.dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=str).encode

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": self.clock.stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields = record.__dict__
        if "status" in fields and record.name == _ACCESS_NAME:
            get = fields.get
            method, path, status = fields["method"], fields["path"], fields["status"]
            data["msg"] = f"{method} {path} {status}"
            data["request_id"], data["method"], data["path"], data["status"] = get("request_id"), method, path, status
            data["duration_ms"], data["function"] = round(fields["duration_ms"], 3), fields["function"]
            data["instance"], data["cold"] = get("instance"), get("cold")
            return self.dumps(data)
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        data["msg"] = text
        if record.name.startswith(FUNCTION_PREFIX):
            data["function"] = fields.get("function") or record.name[len(FUNCTION_PREFIX):]
            data["pid"] = fields.get("pid")
            data["stream"] = fields.get("stream")
        return self.dumps(data)


class BatchingStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]  # StreamHandler is generic in typeshed only
    """A ``StreamHandler`` that writes at most every ``FLUSH_DELAY`` s when called on an event
    loop (one write syscall per batch instead of one per request: access lines are the hot path);
    immediately for WARNING and above, and when called outside a loop. Lines are held here, not in
    the stream's buffer: with ``PYTHONUNBUFFERED=1`` (usual in containers; fnserve's own container
    target sets it) every ``stream.write`` is a system call (issue 14). Lines are never lost on a
    clean exit: ``close()`` (``logging.shutdown``) flushes."""

    FLUSH_DELAY = 0.05

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._scheduled: asyncio.AbstractEventLoop | None = None  # the loop a flush is scheduled on
        self._pending: list[str] = []

    def flush(self) -> None:  # called by StreamHandler.emit() after each record (not used by emit below)
        return None

    def flush_now(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self._scheduled = None
            pending, self._pending = self._pending, []
            try:
                if pending:
                    self.stream.write("".join(pending))
                super().flush()
            except (OSError, ValueError):  # the stream is gone (closed stdout, broken pipe): nobody reads
                pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._pending.append(self.format(record) + self.terminator)
        except Exception:
            self.handleError(record)
            return
        if record.levelno >= logging.WARNING:
            self.flush_now()
            return
        if self._scheduled is not None and not self._scheduled.is_closed():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush_now()
            return
        self._scheduled = loop
        loop.call_later(self.FLUSH_DELAY, self.flush_now)

    def close(self) -> None:
        self.flush_now()
        super().close()


class LogOutput:
    """What ``install()`` attached: one ``handler`` on ``loggers``. ``use(log_format)`` switches
    its format (a command that learns the format from its config after the first lines);
    ``exit_error`` writes a command's last message in the same format to stderr; ``remove()``
    detaches and flushes the handler and gives the loggers back their level and propagation."""

    def __init__(self, handler: BatchingStreamHandler, *, dev: bool, colour: bool,
                 route_of: Callable[[str], str | None] | None) -> None:
        self.handler = handler
        self.dev, self.colour, self.route_of = dev, colour, route_of
        self.loggers: list[tuple[logging.Logger, int, bool]] = []  # logger, its level and propagate before
        self.log_format = ""

    def use(self, log_format: str) -> None:
        """Format every following line as ``log_format`` (``"text"`` or ``"json"``; anything else
        is text: the config rejects it with its own message)."""
        if log_format == self.log_format:
            return
        self.log_format = log_format
        formatter: logging.Formatter = JsonFormatter() if log_format == "json" else TextFormatter(
            dev=self.dev, colour=self.colour, route_of=self.route_of)
        self.handler.setFormatter(formatter)

    def exit_error(self, logger: logging.Logger, message: str, exc: BaseException | None = None,
                   stream: TextIO | None = None) -> None:
        """Write ``message`` as an ERROR record of ``logger`` (with the traceback of ``exc``) to
        ``stream`` (default: stderr) at once, in the current format: the message a command exits
        with."""
        self.handler.flush_now()
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        record = logger.makeRecord(logger.name, logging.ERROR, "(exit)", 0, message, (), exc_info)
        assert self.handler.formatter is not None
        out = stream or sys.stderr
        out.write(self.handler.formatter.format(record) + "\n")
        out.flush()

    def remove(self) -> None:
        """Detach the handler from every logger it was put on (which get their level and
        ``propagate`` back), and flush it."""
        for logger, level, propagate in self.loggers:
            logger.removeHandler(self.handler)
            logger.setLevel(level)
            logger.propagate = propagate
        self.loggers.clear()
        self.handler.flush_now()


class _Threshold(logging.Filter):
    """The handler's filter when ``level`` is above INFO: fnserve's messages below ``level`` are
    dropped; a function's output, access lines (switched at their logger) and ``announce``
    records always pass. The loggers stay at INFO so that other handlers (the dashboard's
    feed) still see every message."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return (record.levelno >= self.level or record.name == _ACCESS_NAME or record.name.startswith(FUNCTION_PREFIX)
                or bool(record.__dict__.get("always")))


def install(log_format: str = "text", stream: TextIO | None = None, *, dev: bool = False,
            route_of: Callable[[str], str | None] | None = None, level: str = "info", quiet: bool = False,
            access: bool = True, environ: Mapping[str, str] | None = None) -> LogOutput:
    """Attach one ``BatchingStreamHandler`` on ``stream`` (default: stdout) to the ``fnserve``
    logger, ``fnserve.access`` and the ``uvicorn`` logger (at WARNING, or ERROR with ``level``
    ``"error"``), none propagating further.
    ``log_format``: ``"text"`` or ``"json"`` (``LogOutput.use`` changes it later); ``dev`` and
    ``route_of``: ``TextFormatter``'s; ``level`` (a key of ``LEVELS``), ``quiet``, ``access``:
    what is shown (module docstring; settings ``log_level``, ``quiet``, ``access_log``);
    ``environ``: where ``NO_COLOR`` / ``FORCE_COLOR`` / ``TERM`` are read for the colour
    decision (``server.terminal.use_colour``; None: none of them set). For the entry points of
    ``fnserve dev`` and ``fnserve start`` only (library code never installs handlers); call
    ``remove()`` on the result when done. Raises ``KeyError`` for an unknown ``level`` (the
    config validates it first)."""
    stream = stream or sys.stdout
    threshold = LEVELS[level]
    if quiet:
        threshold = max(threshold, logging.WARNING)
    show_access = access and not quiet and threshold <= logging.INFO
    output = LogOutput(BatchingStreamHandler(stream), dev=dev, colour=use_colour(stream, environ or {}),
                       route_of=route_of)
    output.use(log_format)
    if threshold > logging.INFO:
        output.handler.addFilter(_Threshold(threshold))
    # fnserve.access holds the handler itself (not through propagation to fnserve): the per-request
    # path then skips a walk up the logger tree; its level switches access lines (log_access tests
    # it before building a record). uvicorn: its own warnings and errors.
    for name, logger_level in (("fnserve", min(threshold, logging.INFO)),
                               (_ACCESS_NAME, logging.INFO if show_access else logging.WARNING),
                               ("uvicorn", max(threshold, logging.WARNING))):
        logger = logging.getLogger(name)
        output.loggers.append((logger, logger.level, logger.propagate))
        logger.addHandler(output.handler)
        logger.setLevel(logger_level)
        logger.propagate = False
    return output


def announce(logger: logging.Logger, message: str, url: str) -> None:
    """Log ``message % url`` (``"fnserve dev: %s"``) at INFO on ``logger``, written whatever the
    log level (``--quiet`` and ``--log-level error`` included: the address is the one line a
    person needs), with ``url`` styled on a colour terminal. JSON: ``msg`` is the plain text."""
    record = logger.makeRecord(logger.name, logging.INFO, "(announce)", 0, message, (url,), None,
                               extra={"url": url, "always": True})
    logger.handle(record)  # not logger.info: that would check the logger's level first


def speaker(logger: logging.Logger) -> Callable[[str], None]:
    """The ``say(line)`` of a command: ``"error: text"`` is logged as ``text`` at ERROR,
    ``"warning: text"`` at WARNING (the formatter writes the prefix again, styled), any other
    line at INFO. Lines stay whole (a route table is one record)."""

    def say(line: str) -> None:
        if line.startswith("error: "):
            logger.error("%s", line[7:])
        elif line.startswith("warning: "):
            logger.warning("%s", line[9:])
        else:
            logger.info("%s", line)

    return say
