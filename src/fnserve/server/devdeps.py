"""``fnserve dev``'s dependency state: the function env, installs while it runs, and the 503s of
functions whose env is not ready (SPEC §7, §8.1; issue 9 items 5 and 6).

``DevDeps`` owns the project's current ``Environment`` and decides, for each reload, whether the
env must change:

- at start-up (``start``, then ``finish_start`` while serving when an install is needed):
  ``ensure_env`` with ``python_fallback`` (a pinned Python that is neither installed
  nor fetchable gives the nearest installed one and ONE warning naming both). A failed install
  leaves no env: every function answers 503 with the install error until a save fixes it — the
  project is never served from fnserve's own interpreter and packages (only ``install = false``
  does that, on purpose);
- a saved dependency file (``requirements.txt``, ``pyproject.toml``, ...) or a config change
  that may change the dependency settings: install in the background; functions keep their env
  meanwhile (those without one answer 503 "installing ...");
- a saved ``.py`` file whose imports name a third-party module the env does not have (the
  reloader's ``Plan.imports``: ``deps.affects_dependencies`` says the file may matter; one parse
  of the file says whether it does): the functions that are or import the file answer 503 + ``Retry-After`` "installing
  <names>" while the new env is built in the background, then every function is restarted on it.

``DepsGate`` is the front app's dispatcher wrapper that answers those 503s
(``errors.EnvironmentUnavailable``, rendered by ``server.errorpages``: HTML for browsers, which
reloads itself after ``Retry-After``). ``HoldEverything`` answers the same 503 to every request
while the first install runs: ``fnserve dev`` binds its port before installing (issue 13 item 3),
so "port in use" is reported at once and a browser sees "installing <names>" at once.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from fnserve.config import Config
from fnserve.deps import DepsOptions, DepsPlan, Environment, ensure_env, plan_deps
from fnserve.deps.progress import LiveLine, live_console
from fnserve.errors import EnvironmentUnavailable, FnserveError
from fnserve.project.importscan import scan_imports
from fnserve.project.types import Function
from fnserve.runtime.asgitypes import Receive, Scope, Send
from fnserve.server.app import Dispatcher, FrontApp
from fnserve.server.errorpages import send_exception
from fnserve.server.logs import LogOutput
from fnserve.server.observe import CURRENT, ResponseObserver

DEPS_SETTINGS = ("install", "python", "detect_imports", "import_map")


@dataclass(frozen=True)
class Hold:
    """Why a function cannot be served now: ``installing`` (names) or ``error`` (the install's)."""

    installing: tuple[str, ...] = ()
    error: FnserveError | None = None

    def exception(self, function_id: str) -> EnvironmentUnavailable:
        return EnvironmentUnavailable(function_id, installing=self.installing, error=self.error)


class DepsGate:
    """A ``Dispatcher`` that answers ``EnvironmentUnavailable`` (503) for held functions and passes
    every other request to ``inner``. ``everyone``: a hold for all functions (no env at all)."""

    def __init__(self, inner: Dispatcher) -> None:
        self.inner = inner
        self.held: dict[str, Hold] = {}
        self.everyone: Hold | None = None

    async def __call__(self, function: Function, scope: Scope, receive: Receive, send: Send) -> None:
        hold = self.held.get(function.id) or self.everyone
        if hold is not None:
            raise hold.exception(function.id)
        await self.inner(function, scope, receive, send)


class HoldEverything:
    """ASGI app in front of dev's ``FrontApp`` during the first install (``serve`` binds the port
    first): while ``gate.everyone`` holds, every HTTP request and WebSocket handshake — static
    files too: the route table and Django's static prefixes are not known yet — is answered with
    its ``EnvironmentUnavailable`` (503 + ``Retry-After`` "installing <names>"; for browsers an
    HTML page that reloads itself, ``server.errorpages``) and logged by ``app.access_log``
    labelled ``installing``. Lifespan messages, and every request once the hold is lifted, go to
    ``app``. ``Observed`` stays in front, so the dashboard keeps answering."""

    observes_responses = True  # like the FrontApp it stands in front of: ``Observed`` passes its raw ``send``

    def __init__(self, app: FrontApp, gate: DepsGate) -> None:
        self.app, self.gate = app, gate

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hold = self.gate.everyone
        if hold is None or scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        exc = hold.exception("the project")
        # its own answer gets what FrontApp's get: the request id header (observe.ResponseObserver)
        await send_exception(scope, ResponseObserver(send, CURRENT.get()), exc, dev=True)
        self.app.access_log(scope, exc.status_code or 503, started, "installing")


class DevDeps:
    """The env of one ``fnserve dev`` run. ``root``: the project; ``environ``: the process
    environment (read once by the caller); ``say``: one line for a person; ``gate``: the
    front app's ``DepsGate``; ``on_change``: coroutine run after a new env is ready (the dev
    server restarts the functions whose target changed)."""

    def __init__(self, root: Path, environ: Mapping[str, str], say: Callable[[str], None], gate: DepsGate,
                 on_change: Callable[[], Awaitable[object]]) -> None:
        self.root, self.environ, self.say, self.gate, self.on_change = root, dict(environ), say, gate, on_change
        self.env: Environment | None = None
        self.plan: DepsPlan | None = None
        self.install = True
        self._task: asyncio.Task[None] | None = None
        self._first: DepsPlan | None = None  # planned by start(), installed by finish_start()
        self.logs: LogOutput | None = None  # set by run_dev: a live line on a terminal (install_progress)
        self._live = False

    @property
    def python(self) -> Path | None:
        """The interpreter for the workers; None = fnserve's own (``install = false`` only)."""
        return self.env.python if self.env is not None and self.install else None

    @property
    def installing(self) -> bool:
        """True while a background install (``reinstall``) runs (the dashboard's dependency panel)."""
        return self._task is not None and not self._task.done()

    def options(self, config: Config) -> DepsOptions:
        return DepsOptions.from_config(config, self.environ, python_fallback=True)

    async def start(self, config: Config) -> tuple[str, ...]:
        """The first step of a run, once the port is bound: plan the env. When it exists already
        (or install is off, or the plan fails: every function is held with the error) it is taken
        and ``()`` is returned. Otherwise every function is held with "installing <names>" and
        the requirement names are returned: run ``finish_start`` (the install) while serving."""
        self.install = config.install
        if not config.install:
            return ()
        try:
            plan = await asyncio.to_thread(plan_deps, self.root, self.options(config), progress=self._progress)
        except FnserveError as exc:
            self._failed(exc, None)
            return ()
        if plan.ready_env() is not None:
            await self._build(config, None, plan)
            return ()
        names = tuple(r.name for r in plan.merged.requirements) or ("the project's environment",)
        self.gate.everyone = Hold(installing=names)
        self._first = plan
        return names

    async def finish_start(self, config: Config) -> bool:
        """The first install, planned by ``start``; on failure every function is held with the
        error (503, naming the requirement and its file) until a saved file fixes it. Returns
        True when the env is ready."""
        plan, self._first = self._first, None
        return await self._build(config, None, plan) or self.env is not None

    async def _build(self, config: Config, held: Iterable[str] | None, plan: DepsPlan | None = None) -> bool:
        """Plan (unless ``plan`` is given) and install; on success swap the env and release holds.
        ``held``: the function ids held for this install (None: a project-wide install). Returns
        True when the env changed."""
        options = self.options(config)
        try:
            with self.install_progress() as progress:
                if plan is None:
                    plan = await asyncio.to_thread(plan_deps, self.root, options, progress=progress)
                env = await asyncio.to_thread(ensure_env, self.root, options, progress=progress, plan=plan)
        except FnserveError as exc:
            self._failed(exc, held)
            return False
        changed = self.env is None or env.key != self.env.key
        self.env, self.plan = env, plan
        self.gate.everyone = None
        for fid in held or ():
            self.gate.held.pop(fid, None)
        return changed

    def _failed(self, exc: FnserveError, held: Iterable[str] | None) -> None:
        self.say(f"error: dependencies: {exc}")
        hold = Hold(error=exc)
        if self.env is None:
            self.gate.everyone = hold
            self.say("  every function answers 503 with this error until it is fixed (fnserve never falls "
                     "back to its own packages; set install = false to manage packages yourself)")
        for fid in held or ():
            self.gate.held[fid] = hold

    def _progress(self, message: str) -> None:
        self.say(f"deps: {message}")

    @contextmanager
    def install_progress(self) -> Iterator[Callable[[str], None]]:
        """The install's progress callback: its lines through ``say`` (the log stack: text, or
        JSON lines); on a terminal with text logs also a live spinner line under them
        (``deps.progress.LiveLine``; the log handler's stream goes through ``rich`` meanwhile, so
        log lines print above the spinner). One live line at a time."""
        logs = self.logs
        stream = logs.handler.stream if logs is not None and logs.log_format == "text" and not self._live else None
        console = live_console(stream)
        if logs is None or stream is None or console is None:
            yield self._progress
            return
        from rich.file_proxy import FileProxy

        live = LiveLine(console, "deps: ", echo=False)

        def progress(message: str) -> None:
            self._progress(message)
            live(message)

        self._live = True
        logs.handler.flush_now()
        logs.handler.setStream(FileProxy(console, stream))
        try:
            with live:
                yield progress
        finally:
            logs.handler.flush_now()
            logs.handler.setStream(stream)
            self._live = False

    def reinstall(self, config: Config, what: str, held: Iterable[str] = (), installing: Iterable[str] = ()) -> None:
        """Install again in the background (a dependency file or a new import changed the set).
        ``held``: function ids answering 503 "installing ``installing``" until it is done."""
        self.install = config.install
        if not config.install:
            return
        names = tuple(installing)
        held = set(held)
        for fid in held:
            self.gate.held[fid] = Hold(installing=names)
        if self.gate.everyone is not None:
            self.gate.everyone = Hold(installing=names)
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the thread finishes its step; the newest set wins

        async def job() -> None:
            if await self._build(config, held):
                await self.on_change()
                self.say(f"deps: {what} → new environment; functions restarted on it")

        self._task = asyncio.get_running_loop().create_task(job())

    async def new_imports(self, config: Config, paths: Iterable[Path]) -> tuple[str, ...]:
        """Requirement names a reload must install because ``paths`` (the reloader's
        ``Plan.imports``) import third-party modules the env lacks; empty when nothing to do
        (install off, no env yet, nothing new). One parse per file; ``plan_deps`` only when a file
        imports something not installed."""
        if not config.install or not config.detect_imports or self.env is None or self.plan is None:
            return ()
        stdlib = self.plan.python.interpreter.stdlib
        unknown = set()
        for path in paths:
            if not path.is_file():
                continue
            for ref in scan_imports(path, path.name).imports:
                top = ref.top
                if ref.level or not top or ref.guarded or ref.type_checking or top in stdlib or top == "__future__":
                    continue
                if not _importable(self.env.site_packages, top) and not _local(self.root, path, top):
                    unknown.add(top)
        if not unknown:
            return ()
        try:
            plan = await asyncio.to_thread(plan_deps, self.root, self.options(config))
        except FnserveError:
            return tuple(sorted(unknown))  # the install reports the error
        if plan.key == self.plan.key:
            return ()
        have = {_name(line) for line in self.env.requirements}
        return tuple(sorted(r.name for r in plan.merged.requirements if r.name not in have)) or tuple(sorted(unknown))


def _name(line: str) -> str:
    try:
        return canonicalize_name(Requirement(line).name)
    except InvalidRequirement:
        return line


def _importable(site: Path, top: str) -> bool:
    return (site / top).is_dir() or (site / f"{top}.py").is_file() or any(site.glob(f"{top}.*.so")) \
        or (top in sys.builtin_module_names)


def _local(root: Path, path: Path, top: str) -> bool:
    """A project module: ``top`` next to the file, at the root, or in ``cloud-functions/``/``src/``."""
    for folder in (path.parent, root, root / "cloud-functions", root / "src"):
        if (folder / top).is_dir() or (folder / f"{top}.py").is_file():
            return True
    return False
