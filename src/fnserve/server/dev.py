"""``fnserve dev``: the front app on uvicorn, one worker per function, hot reload (SPEC §8).

``run_dev(project_dir, overrides, environ)`` is what the CLI calls. The flags and ``FNSERVE_*``
variables are validated once, before anything starts: a bad one exits 2 naming the setting and
its source, as ``fnserve start`` does. After that it never exits on user error: a bad
``vercel.json`` (or ``[tool.fnserve]``, ``fnserve.toml``, ``.env``), a duplicate route or a
function that does not import is shown (start-up output, and a 500 page naming the file for the
requests it affects) until a save fixes it; meanwhile ``DevServer.config`` is the last valid
``Config`` (at start-up: flags + environment + defaults, without the project files).

``DevServer`` holds the state of one run — config, project model, the front app's ``Site``, the
``Supervisor`` — and the reload operations ``Reloader`` drives (``apply(plan)``). Order of a
reload, chosen for zero failed requests across a save:

1. reload config (if a config file changed) and rebuild the project model (always: cheap, and a
   save may add or remove an entry);
2. ``supervisor.update(old ∪ new targets)`` (new functions known, changed envs restarted), then
   swap the ``Site`` atomically, then ``update(new)`` (removed functions drained and stopped);
3. ``supervisor.restart(dependents of the changed files)``: requests arriving meanwhile wait for
   the new instance while the old one finishes what it has in flight.

Instances are forked from a zygote per environment (``supervisor.ZygoteLauncher``, as ``fnserve
start``; spawned where forking is not possible), and every reload starts a new zygote generation
before anything else (``ZygoteLauncher.renew``): new instances never come from a zygote that
imported files as they were before the save. The zygote preloads only third-party and stdlib
modules, so running instances of unaffected functions keep running on the old one (it exits
with its last instance). After a reload the new zygote imports every function's preloads in the
background (``warm_zygotes``), as the first request does at start-up. An instance idle for
``dev_idle_timeout`` s stops (``SingleInstancePolicy(idle_timeout=)``); the next request forks
a new one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fnserve.config import Config, load_config
from fnserve.errors import FnserveError
from fnserve.project import load_project
from fnserve.project.entrypoints import ModuleScan
from fnserve.project.importscan import StampCache
from fnserve.project.types import Function
from fnserve.server.admin import PREFIX, reserved_conflicts
from fnserve.server.app import FrontApp, Site, SiteProblem, static_for
from fnserve.server.collectstatic import (
    StaticRoutes,
    django_functions,
    django_static_hint,
    run_django_static,
    with_django_static,
)
from fnserve.server.dashboard.feed import DashboardFeed
from fnserve.server.dashboard.view import StateSource, deps_panel, dev_holds
from fnserve.server.dashboard.web import DashboardApp
from fnserve.server.devdeps import DEPS_SETTINGS, DepsGate, DevDeps, HoldEverything
from fnserve.server.dispatch import SupervisorDispatcher
from fnserve.server.listen import bind_first_free
from fnserve.server.logs import LogOutput, announce, install, speaker
from fnserve.server.observe import AccessLog, Observed, log_access, note_lease
from fnserve.server.reloader import Plan, Reloader, ReloadFacts, reload_line
from fnserve.server.rules import from_config
from fnserve.supervisor import SingleInstancePolicy, Supervisor, ZygoteLauncher
from fnserve.supervisor.target import WorkerTarget, bytecode_dirs, restart_reason

LOG = logging.getLogger("fnserve.dev")


class DevServer:
    """One ``fnserve dev`` run over ``project_dir``. ``overrides``: setting name → value from
    explicitly given CLI flags; ``environ``: where ``FNSERVE_*`` are read, once; ``say``: prints
    one line for a person (default: ``logs.speaker`` of the ``fnserve.dev`` logger: ``error: ...``
    and ``warning: ...`` lines at their level, others at INFO).

    Raises ``ConfigError`` when a flag or ``FNSERVE_*`` variable is invalid (the CLI exits 2). A
    problem in a project file is not raised: it is kept in ``config_problem`` (shown on every
    function request) and ``config`` holds flags + environment + defaults until a save fixes it."""

    def __init__(self, project_dir: Path, overrides: Mapping[str, Any] | None = None,
                 *, environ: Mapping[str, str] = os.environ, say: Callable[[str], None] | None = None) -> None:
        self.root = Path(project_dir).resolve()
        self.overrides = dict(overrides or {})
        self.environ = dict(environ)
        self.say = say or speaker(LOG)
        self.config_problem: SiteProblem | None = None
        self.config: Config = self._first_config()
        self.project: Any = None
        self.project_problem: SiteProblem | None = None
        self.routes_of: dict[str, str] = {}
        self.launcher = ZygoteLauncher()  # reload = new generation (module docstring)
        self.policy = SingleInstancePolicy(idle_timeout=policy_idle_timeout(self.config))
        self.supervisor = Supervisor(launcher=self.launcher, policy=self.policy, start_timeout=30.0, stop_timeout=5.0)
        self.gate = DepsGate(SupervisorDispatcher(self.supervisor, on_lease=note_lease))
        self.deps = DevDeps(self.root, self.environ, self.say, self.gate, self._env_changed)
        self.app = FrontApp(Site(routes=None), self.gate, dev=True,
                            on_shutdown=(self.stop_warming, self.supervisor.shutdown))
        self.feed = DashboardFeed(on_listen=self._page_open)
        self.front = Observed(self.app, None)
        self.dashboard = DashboardApp(self.feed, StateSource(
            project=lambda: self.project, status=self.supervisor.status, load_error=self.supervisor.load_error,
            problem=self.problem_text,
            holds=lambda: dev_holds(self.gate), deps=lambda: deps_panel(self.deps, self.gate), command="dev"))
        self._dashboard_conflicts: list[str] = []
        self.logs: LogOutput | None = None  # set by run_dev()
        self._installed: dict[str, WorkerTarget] = {}
        self._scans: StampCache[ModuleScan] = StampCache()  # a reload parses only the files that changed
        self.static_prefixes: dict[str, str] = {}  # Django STATIC_URL → function id (probe_static)
        self._django: frozenset[str] = frozenset()
        self._probe_task: asyncio.Task[None] | None = None
        self._warm_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ loading
    def _first_config(self) -> Config:
        """The start-up config. When a project file is at fault, flags + environment + defaults
        (``load_config(files=False)``) and ``config_problem`` set; that load raises
        ``ConfigError`` when the flags or ``FNSERVE_*`` variables themselves are invalid."""
        try:
            return load_config(self.root, self.overrides, self.environ, mode="dev")
        except FnserveError as exc:
            config = load_config(self.root, self.overrides, self.environ, mode="dev", files=False)
            self.config_problem = SiteProblem(f"configuration error: {exc.message}", str(exc))
            return config

    def load_config(self) -> None:
        """Reload the config after a project file changed; on error keep the previous one and
        record the problem (flags and environment were validated at start-up)."""
        try:
            self.config = load_config(self.root, self.overrides, self.environ, mode="dev")
            self.config_problem = None
        except FnserveError as exc:
            self.config_problem = SiteProblem(f"configuration error: {exc.message}", str(exc))
            self.say(f"error: {exc}")

    def load_project(self) -> None:
        """(Re)build the project model; on a project-wide error keep serving static files and
        answer 500 naming the problem for every function request."""
        try:
            project = load_project(self.root, entrypoint=self.config.entrypoint, framework=self.config.framework,
                                   scan_cache=self._scans)
        except FnserveError as exc:
            self.project_problem = SiteProblem(f"the project cannot be served: {exc.message}", str(exc))
            self.say(f"error: {exc}")
            self.mount_dashboard()  # it shows the problem (the previous project's routes decide)
            return
        self.project, self.project_problem = project, None
        self.mount_dashboard()
        self._django = frozenset(f.id for f in django_functions(project))
        self.routes_of = {}
        for route in project.routes.routes:
            self.routes_of.setdefault(route.function.id, route.pattern)

    def _page_open(self, listening: bool) -> None:
        """A dashboard page opened (the first) or closed (the last): the front app's access hook
        feeds the dashboard only meanwhile (``server.dashboard.feed``: no cost otherwise)."""
        self.app.access_log = AccessLog(feed=self.feed) if listening else log_access

    def problem_text(self) -> str | None:
        """The project-wide problem shown on every function request, or None."""
        problem = self.config_problem or self.project_problem
        return None if problem is None else (problem.detail or problem.message)

    def mount_dashboard(self) -> None:
        """The dashboard on ``/_fnserve/`` (``server.dashboard``) when ``dashboard`` is on and the
        project serves nothing there (else the project wins, with one warning per change)."""
        conflicts = reserved_conflicts(self.project, self.root) if self.project is not None else []
        if conflicts and conflicts != self._dashboard_conflicts and self.config.dashboard:
            self.say(f"warning: the project serves {', '.join(conflicts)} under {PREFIX}: the project wins; "
                     "the dashboard is not served")
        self._dashboard_conflicts = conflicts
        self.front.admin = self.dashboard if self.config.dashboard and not conflicts else None

    def site(self) -> Site:
        """The ``Site`` for the current config and project."""
        rules = from_config(self.config.vercel)
        problem = self.config_problem or self.project_problem
        routes = self.project.routes if self.project is not None and self.project_problem is None else None
        if routes is not None and self.static_prefixes:
            routes = StaticRoutes(routes, self.static_prefixes)
        return Site(
            routes=routes,
            rules=rules,
            static=static_for(self.root, rules.clean_urls),
            problem=problem,
            body_limit=self.config.body_limit,
            not_found_hint=functools.partial(django_static_hint, prefixes=dict(self.static_prefixes))
            if self._django else None,
        )

    def targets(self) -> list[WorkerTarget]:
        """One ``WorkerTarget`` per function of the current project, with its limits from
        ``Config.limits_for`` as in ``fnserve start`` (the supervisor enforces ``max_duration``
        and ``memory``; dev's single-instance policy overrides the instance counts and queue)."""
        if self.project is None:
            return []
        config = self.config
        env = config.function_env()
        targets = [
            WorkerTarget.from_function(
                f, self.root, python=self.python, env=env, body_limit=config.body_limit, handler_log=config.handler_log,
                limits=lambda kind, fid=f.id: config.limits_for(fid, asgi=kind == "asgi"))
            for f in self.project.functions
        ]
        return [with_django_static(t, "finders") if t.id in self._django else t for t in targets]

    async def probe_static(self) -> None:
        """Django static files in dev (``server.collectstatic``): learn each Django function's
        ``STATIC_URL`` (a subprocess in its env) so the front routes it to the function, whose
        worker answers from Django's finders. A failure is a warning (the function's own
        requests show the error)."""
        prefixes: dict[str, str] = {}
        if self.gate.everyone is None:
            for target in self.targets():
                if target.id not in self._django:
                    continue
                try:
                    url = await asyncio.to_thread(run_django_static, target, None)
                except FnserveError as exc:
                    self.say(f"warning: Django static files are not served: {exc.message}")
                    continue
                if url is not None:
                    prefixes.setdefault(url, target.id)
        if prefixes != self.static_prefixes:
            self.static_prefixes = prefixes
            self.app.swap(self.site())
            for url, fid in prefixes.items():
                self.say(f"django: {url} is served from Django's static finders ({fid})")

    async def _env_changed(self) -> None:
        """A new env is ready (``DevDeps``): a new zygote generation, restart on it, then ask
        Django again."""
        self.launcher.renew()
        await self.install()
        self.warm_zygotes()
        await self.probe_static()

    def warm_zygotes(self) -> None:
        """After a new zygote generation: let it import every function's preloads in the
        background, so cold starts fork from a warm zygote as after the first request. One task;
        a newer generation makes the previous one stop before its next function (never in the
        middle of a zygote's start). Nothing before the supervisor's first start (it warms them
        itself then)."""
        if not self.supervisor.starter.is_open:
            return
        targets = list(self._installed.values())
        starter, pools, launcher = self.supervisor.starter, self.supervisor.pools, self.launcher
        generation = launcher.generation

        async def warm() -> None:
            for target in targets:
                await asyncio.sleep(0)  # a zygote with nothing to import answers without yielding: let requests in
                if pools.closing or launcher.generation != generation:
                    return
                try:
                    await starter.prepare(target)
                except Exception as exc:  # a zygote problem: its functions spawn, and the launcher said why
                    LOG.debug("warming the zygote for %s failed: %s", target.id, exc)

        self._warm_task = asyncio.get_running_loop().create_task(warm())

    async def stop_warming(self) -> None:
        """Cancel the background ``warm_zygotes`` task, if any (before the supervisor stops)."""
        task, self._warm_task = self._warm_task, None
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    def _probe_in_background(self) -> None:
        if not self._django and not self.static_prefixes:
            return
        if self._probe_task is not None and not self._probe_task.done():
            self._probe_task.cancel()
        self._probe_task = asyncio.get_running_loop().create_task(self.probe_static())

    @property
    def python(self) -> Path | None:
        """The workers' interpreter: the project env's (``server.devdeps``); None = fnserve's own,
        only with ``install = false``."""
        return self.deps.python

    async def ensure_deps(self) -> tuple[str, ...]:
        """Plan the project's env when ``install`` is on (``DevDeps.start``): a failed plan holds
        every function at 503 with the error, never fnserve's own packages. Returns the names
        to install first (``DevDeps.finish_start``), or ``()`` when the env is ready."""
        return await self.deps.start(self.config)

    async def install(self) -> set[str]:
        """Make the supervisor and the front app agree with the current model (see module doc).
        Returns the ids the supervisor restarted because their target changed."""
        new = self.targets()
        if self.project_problem is not None:  # keep the last good workers; requests get the 500
            self.app.swap(self.site())
            return set()
        self.policy.idle_timeout = policy_idle_timeout(self.config)  # the new targets' limits read it
        union = {**self._installed, **{t.id: t for t in new}}
        restarted = await self.supervisor.update(union.values())
        self.app.swap(self.site())
        if set(union) != {t.id for t in new}:
            await self.supervisor.update(new)
        self._installed = {t.id: t for t in new}
        return set(restarted)

    # ------------------------------------------------------------------ reload
    async def apply(self, plan: Plan) -> str:
        """Apply one batch of file changes (driven by ``Reloader``). Returns the line to print
        (``reloader.reload_line``: the files, and what became of each function, with the cause)."""
        started = time.perf_counter()
        what = plan.describe(self.root)
        old = self.project
        self.launcher.renew()  # before any instance starts for this reload (module docstring)
        old_targets = dict(self._installed)
        load_errors_before = {f.id: self.supervisor.load_error(f.id) for f in old.functions} if old is not None else {}
        deps_config = {n: getattr(self.config, n) for n in DEPS_SETTINGS}
        broken_config = self.config_problem is not None
        if plan.config:
            self.load_config()
        reinstall = bool(plan.deps) or (bool(plan.config) and self.config_problem is None and (
            broken_config or deps_config != {n: getattr(self.config, n) for n in DEPS_SETTINGS}))
        for kind, path in plan.code:
            if kind != "deleted":
                forget_bytecode(path)
        self.load_project()
        restarted = await self.install()
        affected: set[str] = set()
        for kind, path in plan.code:
            if kind != "added" and old is not None:
                affected |= old.dependents(path)
            if kind != "deleted" and self.project is not None:
                affected |= self.project.dependents(path)
        known = {f.id for f in self.project.functions} if self.project is not None else set()
        before = {f.id for f in old.functions} if old is not None else set()
        affected = (affected & known & before) - restarted
        missing = await self.deps.new_imports(self.config, plan.imports)
        if (reinstall or missing) and self.config.install:
            held = {fid for _, p in plan.code for fid in self.project.dependents(p)} \
                if missing and self.project is not None else set()
            self.deps.reinstall(self.config, what, held, missing)
            affected -= held  # they restart on the new environment
        reinstall = reinstall or bool(missing)
        results = await self.supervisor.restart(sorted(affected)) if affected else {}
        self.warm_zygotes()
        problem = self.config_problem or self.project_problem
        facts = ReloadFacts(
            what,
            results={fid: results.get(fid) for fid in affected},
            changed={fid: restart_reason(old_targets.get(fid), self._installed[fid])
                     for fid in restarted if fid in self._installed},
            file_errors_before={f.id: f.error for f in old.functions if f.error} if old is not None else {},
            file_errors_now={f.id: f.error for f in self.functions() if f.error},
            load_errors_before=load_errors_before,
            load_errors_now={fid: self.supervisor.load_error(fid) for fid in restarted},
            added=sorted(known - before) if old is not None and self.project is not None else (),
            removed=sorted(before - known) if old is not None and self.project is not None else (),
            deps=("installing dependencies in the background" if self.config.install
                  else "install is off (--no-install): requirements are not applied") if reinstall else None,
            problem=problem.message if problem is not None else None)
        if plan.code or plan.config:
            self._probe_in_background()
        facts.ms = (time.perf_counter() - started) * 1000
        return reload_line(facts)

    def route_of(self, function_id: str) -> str | None:
        """The route pattern shown in front of a function's output lines."""
        return self.routes_of.get(function_id)

    def functions(self) -> tuple[Function, ...]:
        return self.project.functions if self.project is not None else ()


def policy_idle_timeout(config: Config) -> float:
    """``dev_idle_timeout`` as the single-instance policy takes it: s, ``math.inf`` for 0 (never)."""
    return config.dev_idle_timeout or math.inf


def open_browser(url: str, say: Callable[[str], None]) -> None:
    """``--open``: open ``url`` with ``webbrowser.open`` in a daemon thread (a browser launcher
    may block); a failure is one line, never an error."""
    import threading
    import webbrowser

    def run() -> None:
        try:
            if not webbrowser.open(url):
                say(f"note: no browser to open; visit {url}")
        except Exception as exc:  # any launcher failure: dev keeps serving
            say(f"note: could not open a browser ({exc}); visit {url}")

    threading.Thread(target=run, name="fnserve-open", daemon=True).start()


def forget_bytecode(path: Path) -> None:
    """Delete ``<name>.*.pyc`` of a saved module (``supervisor.target.bytecode_dirs``). Python trusts a ``.pyc`` whose
    recorded source mtime (whole seconds) and size match, so two same-size saves within one
    second would otherwise give the restarted worker the previous code."""
    for cache in bytecode_dirs(path):  # beside it, or under .fnserve/pycache (workers' -X pycache_prefix)
        for pyc in cache.glob(f"{path.stem}.*.pyc") if cache.is_dir() else ():
            try:
                pyc.unlink()
            except OSError:
                pass  # read-only tree: the worker may load stale bytecode for up to a second


async def serve(dev: DevServer) -> None:
    """Bind the port (before any install: "port in use" is reported at once), then load
    everything, print the route table and the URL, and serve until SIGINT/SIGTERM. When the
    project's env must be installed first, serve at once meanwhile: every request answers 503
    "installing <names>" (``server.devdeps.HoldEverything``) until the env is ready."""
    import uvicorn

    if dev.config_problem is not None:
        dev.say(f"error: {dev.config_problem.detail or dev.config_problem.message}")
    dev.load_project()
    host = dev.config.host
    sock = bind_first_free(host, dev.config.port, explicit=dev.config.sources.get("port", "default") != "default")
    port = sock.getsockname()[1]
    if dev.config.port not in (0, port):
        dev.say(f"note: port {dev.config.port} is in use; serving on {port} instead (pass --port to choose)")
    shown = f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}"
    installing = await dev.ensure_deps()
    ready = asyncio.Event()
    first: asyncio.Task[None] | None = None
    if installing:
        dev.say(f"fnserve dev: installing {', '.join(installing)} first; {url} answers 503 until it is done")
        dev.front.app = HoldEverything(dev.app, dev.gate)
        first = asyncio.get_running_loop().create_task(_first_install(dev, url, ready))
    else:
        await _startup(dev)
        ready.set()
    from fnserve.server.frontdoor import FrontLimits, uvicorn_options  # imports uvicorn: only when serving

    config = uvicorn.Config(
        dev.front, ws="websockets-sansio", lifespan="on", access_log=False, log_config=None,
        timeout_graceful_shutdown=3, server_header=False, proxy_headers=False,
        **uvicorn_options(FrontLimits.from_config(dev.config)),  # httptools + front-door limits (issue 10)
    )
    server = uvicorn.Server(config)
    dev.dashboard.stopping = lambda: server.should_exit
    stop = asyncio.Event()
    watcher = None
    if dev.config.reload:
        async def apply(plan: Plan) -> str:  # changes saved during the first install: applied after it
            await ready.wait()
            return await dev.apply(plan)

        reloader = Reloader(dev.root, apply, emit=dev.say, dirs=dev.config.reload_dir,
                            exclude=dev.config.reload_exclude, env_files=dev.config.env_file)
        watcher = asyncio.get_running_loop().create_task(reloader.run(stop))
    if first is None:
        _say_url(dev, url)
    if dev.config.open:
        open_browser(f"http://{'localhost' if host in ('0.0.0.0', '::') else shown}:{port}/", dev.say)
    try:
        await server.serve(sockets=[sock])
    finally:
        stop.set()
        if watcher is not None:
            watcher.cancel()
        if first is not None and not first.done():
            first.cancel()
        await dev.stop_warming()
        await dev.supervisor.shutdown()
        sock.close()
        dev.say("fnserve dev: stopped")


async def _startup(dev: DevServer) -> None:
    """The env is settled (ready, or failed with every function held): print the route table,
    start the supervisor on the project, learn Django's static prefixes."""
    from fnserve.project.report import render_text

    if dev.project is not None:
        dev.say(render_text(dev.project, dev.config.vercel).rstrip("\n"))
    await dev.install()
    await dev.probe_static()


async def _first_install(dev: DevServer, url: str, ready: asyncio.Event) -> None:
    """``serve``'s first install while the port answers 503: install, start up, lift the hold,
    then print the URL line (``fnserve dev: <url>``) as a start without an install does."""
    try:
        await dev.deps.finish_start(dev.config)
        await _startup(dev)
    except Exception:  # a bug: keep serving what can be served, and say so
        LOG.exception("fnserve dev: the first install failed unexpectedly (please report it)")
    finally:
        dev.front.app = dev.app
        ready.set()
    _say_url(dev, url)


def _say_url(dev: DevServer, url: str) -> None:
    announce(LOG, "fnserve dev: %s", url)
    if dev.front.admin is not None:
        LOG.info("dashboard: %s", f"{url}{PREFIX}", extra={"url": f"{url}{PREFIX}"})


def run_dev(project_dir: Path, overrides: Mapping[str, Any] | None = None,
            environ: Mapping[str, str] = os.environ) -> int:
    """Entry point of ``fnserve dev``: validates the flags (``overrides``: setting name → raw
    value) and ``FNSERVE_*`` of ``environ`` once, then sends every line of its output through one
    handler on the ``fnserve`` and ``uvicorn`` loggers (``server.logs``: text for a terminal, or
    JSON lines with ``--log-format json``) and runs the server on uvloop. Returns the exit code:
    0 after Ctrl-C; 2 for a bad flag or variable (``error: <source>: <setting>: ...`` and what is
    allowed, on stderr) or when it cannot listen."""
    try:
        dev = DevServer(project_dir, overrides, environ=environ)
    except FnserveError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    config = dev.config
    dev.logs = dev.deps.logs = logs = install(config.log_format, dev=True, route_of=dev.route_of, level=config.log_level,
                                              quiet=config.quiet, access=config.access_log, environ=environ)
    dev.feed.attach_logging()
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve(dev))
        else:
            uvloop.run(serve(dev))
    except FnserveError as exc:
        logs.exit_error(LOG, str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    except Exception as exc:
        logs.exit_error(LOG, "fnserve dev stopped on an internal error (please report it)", exc)
        return 1
    finally:
        dev.feed.detach_logging()
        logs.remove()
    return 0
