"""fnserve's exception tree. Every error says what was found and what to do.

::

    FnserveError                      base; ``.hint`` says what to do; ``.status_code`` (None: not an HTTP answer)
    ├── ConfigError                   a bad setting: ``.source`` (file or flag), ``.key``, ``.allowed``
    ├── ProjectError                  the project cannot be modelled as a whole
    │   ├── DuplicateRouteError       two files produce one route: ``.route``, ``.files``
    │   └── NoEntrypointError         zero-config found nothing: ``.candidates``
    ├── DependencyError               resolving or installing requirements failed
    └── WorkerError                   a function cannot answer (503 unless below): unknown function, shutting down
        ├── WorkerCrashed             the worker died mid-request (502): ``.function_id``, ``.exit_status``
        │   ├── MemoryExceeded        its instance went over ``memory`` and was replaced (502): ``.limit_mb``, ``.peak_mb``
        │   └── HeartbeatTimeout      its instance's event loop was blocked past ``heartbeat_timeout`` and was
        │                             killed (502): ``.silent_s``, ``.timeout``
        ├── WorkerStartTimeout        the worker was not ready in time (503): ``.function_id``, ``.timeout``
        ├── Overloaded                the function's queue is full (503 + ``Retry-After``): ``.retry_after`` s
        ├── EnvironmentUnavailable    dev: its env is being installed (503 + ``Retry-After``) or failed to install (503)
        ├── DurationExceeded          the request ran past ``maxDuration`` (504): ``.max_duration`` s
        ├── FunctionLoadFailed        import / lifespan startup failed (500): ``.load_error``, ``.traceback``
        └── FunctionFailed            the app raised (500): ``.traceback``

An error with a ``status_code`` is an HTTP answer: the front app (``fnserve.server.app``) renders
it as is with ``fnserve.server.errorpages.send_exception`` — ``status_code``, ``message`` (in
production ``public_message``: for ``FunctionFailed`` and ``FunctionLoadFailed`` it says only
that the function failed, never the exception's text, which may hold secrets; the text and the
traceback go to the log), ``detail`` (dev only: the hint, or the traceback of load / app
failures) and ``headers`` (``Retry-After`` for ``Overloaded``) — unless ``response_started`` is
True: the response is under way and the client connection is dropped instead.

Errors met inside a function's own process (load failures) live in ``fnserve.runtime.failures``
because the runtime may import nothing from the rest of fnserve. The CLI maps ``FnserveError``
to a message and exit code 2 (``fnserve.cli``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar


class FnserveError(Exception):
    """Base class. ``message`` says what was found; ``hint`` says what to do. ``exit_code``: the
    CLI's exit code for it; ``status_code``: the HTTP status a request gets for it (None: none)."""

    exit_code = 2
    status_code: ClassVar[int | None] = None
    response_started = False

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message

    @property
    def detail(self) -> str | None:
        """Longer text shown under ``message`` in dev error pages: the hint, or a traceback."""
        return self.hint

    @property
    def public_message(self) -> str:
        """What a client of ``fnserve start`` is told: ``message``, unless it may carry the
        function's own data (exception text, load errors): then a sentence without it."""
        return self.message

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """Extra response headers when answered over HTTP (lower-case names)."""
        return []


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
    """A function cannot answer a request: its worker could not be started, died, or the
    supervisor does not know it or is shutting down (503 unless a subclass says otherwise)."""

    status_code: ClassVar[int | None] = 503


class WorkerCrashed(WorkerError):
    """The worker process died, or its connection broke, while a request was in flight (SPEC §3.5:
    502 if ``response_started`` is False; otherwise the client connection must be aborted).
    ``exit_status``: the process's exit status when known (negative: killed by that signal)."""

    status_code = 502

    def __init__(self, function_id: str, *, response_started: bool = False, exit_status: int | None = None) -> None:
        self.function_id, self.response_started, self.exit_status = function_id, response_started, exit_status
        how = f" (exit status {exit_status})" if exit_status is not None else ""
        super().__init__(
            f"the worker of {function_id} died while serving the request{how}",
            "see the function's log above; the next request starts a new worker",
        )


class WorkerStartTimeout(WorkerError):
    """A worker did not become ready within ``timeout`` seconds (503)."""

    status_code = 503

    def __init__(self, function_id: str, timeout: float) -> None:
        self.function_id, self.timeout = function_id, timeout
        super().__init__(
            f"the worker of {function_id} was not ready after {timeout:g} s",
            "its import or lifespan startup is slow or stuck; see the function's log",
        )


class FunctionLoadFailed(WorkerError):
    """The function failed to import or to run lifespan startup (500 with the traceback in dev).
    ``load_error``: a ``fnserve.runtime.failures.LoadError`` (``.file``, ``.attr``, ``.found``,
    ``.message``, ``.traceback``, ``.hint``). Raised for every request until the function is
    restarted (its file changed)."""

    status_code = 500

    def __init__(self, function_id: str, load_error: object) -> None:
        self.function_id, self.load_error = function_id, load_error
        text = str(getattr(load_error, "message", None) or load_error).strip()
        super().__init__(
            f"{function_id} failed to load: {text.splitlines()[0] if text else 'unknown error'}",
            getattr(load_error, "hint", None) or "fix the error; the function is retried when its file changes",
        )

    @property
    def traceback(self) -> str:
        return getattr(self.load_error, "traceback", "") or ""

    @property
    def public_message(self) -> str:
        return "the function could not be started; the server log has the details"

    @property
    def detail(self) -> str | None:
        return self.traceback or None


class FunctionFailed(WorkerError):
    """The function's app raised while serving a request (500 if ``response_started`` is False).
    ``traceback``: the formatted traceback from the worker."""

    status_code = 500

    def __init__(self, function_id: str, message: str, traceback: str = "", *, response_started: bool = False) -> None:
        self.function_id, self.traceback, self.response_started = function_id, traceback, response_started
        super().__init__(f"{function_id} raised {message}", "see the traceback in the function's log")

    @property
    def detail(self) -> str | None:
        return self.traceback or None

    PUBLIC_MESSAGE: ClassVar[str] = "the function failed while handling the request; the server log has the details"

    @property
    def public_message(self) -> str:
        return self.PUBLIC_MESSAGE


class MemoryExceeded(WorkerCrashed):
    """The instance serving the request went over its ``memory`` limit and was replaced (SPEC §9:
    502 for its in-flight requests). ``limit_mb`` / ``peak_mb``: MB (peak RSS or cgroup peak)."""

    def __init__(self, function_id: str, limit_mb: int, peak_mb: float | None, *, response_started: bool = False) -> None:
        super().__init__(function_id, response_started=response_started)
        self.limit_mb, self.peak_mb = limit_mb, peak_mb
        peak = f" (peak {peak_mb:.0f} MB)" if peak_mb is not None else ""
        self.message = f"the worker of {function_id} went over its memory limit of {limit_mb} MB{peak} and was replaced"
        self.hint = "raise \"memory\" for it in vercel.json \"functions\" or use less memory per request"
        self.args = (self.message,)


class Overloaded(WorkerError):
    """Every instance of the function is busy, no more may start and its queue is full (SPEC
    §3.5: 503 with ``Retry-After: retry_after`` seconds). ``queue_size``: the bound that was hit."""

    status_code = 503

    def __init__(self, function_id: str, queue_size: int, retry_after: int = 1, reason: str = "") -> None:
        self.function_id, self.queue_size, self.retry_after = function_id, queue_size, retry_after
        super().__init__(
            reason or f"{function_id} is overloaded: every instance is busy and {queue_size} requests already wait",
            "retry later, or raise max_instances / queue_size / concurrency for this function",
        )

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [(b"retry-after", b"%d" % self.retry_after)]


class EnvironmentUnavailable(WorkerError):
    """``fnserve dev``: the function's environment is not ready (503). ``installing``: the
    requirement names being installed (with ``Retry-After: retry_after`` s), or ``error``: the
    ``DependencyError`` of the failed install (the function waits for a fix; it never falls back
    to fnserve's own packages)."""

    status_code = 503

    def __init__(self, function_id: str, *, installing: Sequence[str] = (), error: FnserveError | None = None,
                 retry_after: int = 2) -> None:
        self.function_id, self.installing, self.error, self.retry_after = function_id, tuple(installing), error, retry_after
        if error is not None:
            super().__init__(f"{function_id}: its dependencies could not be installed: {error.message}",
                             error.hint or "fix the requirement; fnserve dev installs again when the file is saved")
        else:
            names = ", ".join(self.installing) or "the project's requirements"
            super().__init__(f"installing {names} for {function_id}; retry in a moment",
                             "fnserve dev reloads the function when the install is done")

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        return [] if self.error is not None else [(b"retry-after", b"%d" % self.retry_after)]


class DurationExceeded(WorkerError):
    """The request ran longer than the function's ``maxDuration`` (SPEC §3.5: 504); the instance
    serving it was killed. ``max_duration``: seconds; ``response_started``: if True the client
    connection must be aborted instead."""

    status_code = 504

    def __init__(self, function_id: str, max_duration: float, *, response_started: bool = False) -> None:
        self.function_id, self.max_duration, self.response_started = function_id, max_duration, response_started
        super().__init__(
            f"{function_id} did not answer within its maxDuration of {max_duration:g} s",
            "raise maxDuration for it in vercel.json \"functions\" or make it faster; its instance was replaced",
        )


class HeartbeatTimeout(WorkerCrashed):
    """The instance serving the request sent no heartbeat for ``timeout`` s (its event loop was
    blocked, e.g. by one long C call) and was killed (502 for its in-flight requests).
    ``silent_s``: how long it had been silent, s; ``timeout``: the ``heartbeat_timeout`` setting, s."""

    def __init__(self, function_id: str, timeout: float, silent_s: float | None, *,
                 response_started: bool = False) -> None:
        super().__init__(function_id, response_started=response_started)
        self.timeout, self.silent_s = timeout, silent_s
        self.message = (f"the worker of {function_id} was killed: its event loop sent no heartbeat for "
                        f"{silent_s if silent_s is not None else timeout:.1f} s (heartbeat_timeout {timeout:g} s), "
                        "a call blocked it")
        self.hint = ("run blocking work in a thread (or a sync handler), or raise --heartbeat-timeout "
                     "(FNSERVE_HEARTBEAT_TIMEOUT) above the longest blocking call")
        self.args = (self.message,)
