"""``fnserve start``: the production server (SPEC §9; issue 6 items 4-6).

``run_start(project_dir, overrides) -> exit code`` is what the CLI calls. Unlike ``dev``, a
problem found at start is fatal (exit 2 with the message): a bad config, a project that cannot be
modelled, a function file with an error, dependencies that do not install, a port in use.

Serving: the ``FrontApp`` of ``fnserve dev`` (``dev=False``: no tracebacks to clients) behind
``observe.Observed`` (request ids, ``/_fnserve/*``), on uvicorn with uvloop + httptools, uvicorn's
access log off (ours: ``server.logs``), no ``Server:`` header (nothing to advertise), no reload
watcher. With ``--admin-port`` a second uvicorn server in the same loop serves ``AdminApp``.

Signals (STYLE habit 4): uvicorn's own handlers are not installed (``_QuietUvicornServer.capture_signals`` is
a no-op: uvicorn would otherwise re-raise the signal after serving and the process would die of
it); ``loop.add_signal_handler`` handlers only put the signal on a queue, and ``control()``
does the work, one event at a time:

- SIGTERM / SIGINT: readiness turns 503, the main server stops accepting (``should_exit``) and
  waits up to ``grace_period`` s for in-flight requests (uvicorn cancels the rest: those that had
  not started their response get 503 + ``Retry-After``, the others a closed connection), then
  ``Supervisor.shutdown`` gives every instance the rest of the grace period (at least 1 s) to
  finish and run its ASGI lifespan shutdown; then the admin server stops; exit 0. A second
  SIGTERM/SIGINT stops waiting (``force_exit``) and kills the instances.
- SIGHUP: reload (``reload()``): config, project, dependencies again; any error keeps the
  previous version serving (logged, ``fnserve_reloads_total{result="failed"}``). Otherwise new
  functions are added, changed targets restarted, the ``Site`` swapped, removed functions drained,
  and every other function restarted (``Supervisor.restart``: requests arriving meanwhile wait
  for the new instance while the old ones finish theirs), so no request fails.

``/_fnserve/*`` is on the main port unless ``--admin-port`` is given (then only there). It is
reserved: if the project has a route or a public file whose literal path is
under ``/_fnserve/``, the endpoints are NOT mounted on the main port (the project's route wins)
and a warning says so; they are still served on ``--admin-port`` when given.

Django static files (SPEC §4): after the dependencies, ``collect_static`` runs ``collectstatic``
for the project's Django functions in their env, into ``.fnserve/django-static/`` (never the
project's ``STATIC_ROOT``), served by the front after ``public/`` (``server.collectstatic``); a
failure is fatal at start, keeps the previous version on SIGHUP.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from fnserve.config import Config, load_config
from fnserve.errors import ConfigError, FnserveError, ProjectError
from fnserve.runtime.confine import landlock_abi, set_dumpable
from fnserve.server.admin import PREFIX, AdminApp, reserved_conflicts
from fnserve.server.app import FrontApp, Site, static_for
from fnserve.server.collectstatic import CollectedStatic, collect, django_functions, with_django_static
from fnserve.server.dashboard.feed import DashboardFeed
from fnserve.server.dispatch import SupervisorDispatcher
from fnserve.server.listen import bind
from fnserve.server.logs import announce, install, speaker
from fnserve.server.metrics import Metrics, status_of
from fnserve.server.observe import AccessLog, Observed, ObservedSupervisor
from fnserve.server.rules import from_config
from fnserve.server.snapshots import Snapshots
from fnserve.server.static import StaticFiles
from fnserve.supervisor import Supervisor, WorkerTarget, ZygoteLauncher
from fnserve.supervisor.target import PYCACHE, compile_bytecode, confinement, resolve_user, restart_reason

LOG = logging.getLogger("fnserve.start")
# settings a SIGHUP cannot change: the sockets are bound, the log handler and the supervisor made
RESTART_ONLY = ("host", "port", "admin_port", "dashboard", "log_format", "log_level", "quiet", "access_log",
                "grace_period", "heartbeat_timeout", "load_retry", "max_requests", "max_requests_jitter", "max_failures",
                "instance_max_open_files", "instance_max_processes",  # the supervisor's (issue 10 item 7)
                "header_limit", "header_count", "header_timeout", "body_timeout", "max_connections",  # uvicorn's protocol
                "user", "direct_path")


class _QuietUvicornServer:
    """``uvicorn.Server`` without its signal handling (see the module docstring). Built lazily
    so importing this module does not import uvicorn."""

    @staticmethod
    def make(config: Any) -> Any:
        import contextlib

        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Server(config)


class StartServer:
    """One ``fnserve start`` run. ``overrides``: setting name → value of the given CLI flags;
    ``say``: prints one line for a person (default: ``logs.speaker`` of the ``fnserve.start`` logger).

    The config is loaded and validated here, once, before anything starts: raises
    ``ConfigError`` naming the setting and its source (a flag, ``FNSERVE_*``, a project file)."""

    def __init__(self, project_dir: Path, overrides: Mapping[str, Any] | None = None,
                 *, say: Callable[[str], None] | None = None) -> None:
        self.root = Path(project_dir).resolve()
        self.overrides = dict(overrides or {})
        self.say = say or speaker(LOG)
        self.config: Config = load_config(self.root, self.overrides, mode="start")
        if self.config.dashboard and self.config.admin_port is None:
            raise ConfigError(self.config.sources.get("dashboard", "dashboard"), "dashboard",
                              "fnserve start serves the dashboard only on --admin-port (it shows tracebacks and "
                              "function output)", "add --admin-port PORT, or leave the dashboard off")
        self.user = _user_of(self.config)
        self.feed = DashboardFeed() if self.config.dashboard else None
        self.project: Any = None
        self.python: Path | None = None
        self.state = "starting"  # → "ready" → "draining"
        self.metrics = Metrics()
        self.supervisor: Any = None
        self.app: FrontApp | None = None
        self.admin: AdminApp | None = None
        self.front: Observed | None = None
        self._installed: dict[str, WorkerTarget] = {}
        self._admin_port: int | None = None
        self.snapshots = Snapshots(self.root)
        self.collected: CollectedStatic | None = None
        self.router: Any = None  # server.direct.DirectRouter with direct_path (issue 14 item 2)
        self._limits: Any = None  # frontdoor.FrontLimits, computed once (it raises the open-file limit)

    # ------------------------------------------------------------------ loading (raise FnserveError)
    def load(self) -> tuple[Config, Any]:
        """Config again (mode "start": ``.env.production*``) and the project model, as on SIGHUP.
        Raises ``ConfigError``, ``ProjectError`` (see ``load_project``)."""
        config = load_config(self.root, self.overrides, mode="start")
        return config, self.load_project(config)

    def load_project(self, config: Config) -> Any:
        """The project model of ``config``, read from a new snapshot of the project (``snapshots``:
        instances run that immutable copy, so what was validated is what runs; a rejected
        version's snapshot is discarded). Raises ``ProjectError`` (also when a function file has
        an error: production serves all or nothing, or the copy fails)."""
        from fnserve.project import load_project

        try:
            snapshot = self.snapshots.take()
        except OSError as exc:
            raise ProjectError(f"cannot copy the project into {self.snapshots.folder}: {exc}",
                               "make sure the project's .fnserve/ folder is writable and the disk has room") from exc
        try:
            project = self._check(load_project(snapshot, entrypoint=config.entrypoint, framework=config.framework))
        except BaseException:
            self.snapshots.discard(snapshot)
            raise
        return project

    def _check(self, project: Any) -> Any:
        errors = [p for p in project.problems if p.severity == "error"]
        if errors:
            listed = "; ".join(f"{p.file + ': ' if p.file else ''}{p.message}" for p in errors[:5])
            more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
            raise ProjectError(f"{len(errors)} function(s) cannot be served: {listed}{more}",
                               "fix them (see `fnserve routes`); fnserve start serves a project only when every function loads")
        return project

    async def environment(self, config: Config) -> Path | None:
        """The interpreter of the project's env (``ensure_env``, in a thread); None with
        ``--no-install`` (fnserve's own interpreter). Raises ``DependencyError``."""
        if not config.install:
            return None
        from fnserve.deps import ensure_env_async

        env = await ensure_env_async(self.root, config, progress=lambda m: self.say(f"deps: {m}"))
        return env.python

    def site(self) -> Site:
        rules = from_config(self.config.vercel)
        static = static_for(self.root, rules.clean_urls)
        if self.collected is not None:
            static = StaticFiles(static.directory, clean_urls=rules.clean_urls,
                                 also=(StaticFiles(self.collected.root),))
        return Site(routes=self.project.routes, rules=rules, static=static, body_limit=self.config.body_limit)

    def targets(self) -> dict[str, WorkerTarget]:
        out = self._targets(self.config, self.project, self.python)
        roots = self.collected.static_roots if self.collected is not None else {}
        return {fid: with_django_static(t, "collected", roots[fid]) if fid in roots else t for fid, t in out.items()}

    def _targets(self, config: Config, project: Any, python: Path | None) -> dict[str, WorkerTarget]:
        env = config.function_env()
        confine = confinement(self.root, read_only=config.read_only_code, user=self.user,
                              writable=[str(self.root / w) for w in config.writable_path])  # issue 10 items 8-9
        out = {}
        for function in project.functions:
            out[function.id] = WorkerTarget.from_function(
                function, project.root, python=python, env=env, body_limit=config.body_limit,
                handler_log=config.handler_log,
                pycache=self.root / PYCACHE,  # one cache for every snapshot (site-packages compiled once)
                limits=lambda kind, fid=function.id: config.limits_for(fid, asgi=kind == "asgi"),
                passthrough=config.env_passthrough, confine=confine)
        return out

    collects_django_static = True  # False for a build output (its static/ has the files already)

    async def collect_static(self, config: Config, project: Any, python: Path | None) -> CollectedStatic | None:
        """``collectstatic`` of the project's Django functions (module docstring), in a thread.
        Raises ``ProjectError`` naming the function when it fails."""
        functions = django_functions(project) if self.collects_django_static else ()
        if not functions:
            return None
        targets = self._targets(config, project, python)
        keep = self.collected.root if self.collected is not None else None
        collected = await asyncio.to_thread(collect, targets, functions, self.root / ".fnserve", keep=keep)
        if collected is not None:
            urls = sorted({"/" + p.relative_to(collected.root).as_posix() + "/" for p in collected.static_roots.values()})
            self.say(f"django: collectstatic into {collected.root}, served at {', '.join(urls)}")
        return collected

    def reserved_conflicts(self) -> list[str]:
        """Routes and public files of the project under ``/_fnserve/`` (see module docstring)."""
        return reserved_conflicts(self.project, self.root)

    # ------------------------------------------------------------------ install / reload
    def _mount_admin(self, admin_port: int | None) -> None:
        """The endpoints go on the main port unless an admin port is configured (then only
        there) or the project serves something under ``/_fnserve/`` (then the project wins)."""
        conflicts = self.reserved_conflicts()
        assert self.front is not None
        if conflicts:
            where = "on --admin-port only" if admin_port is not None else "nowhere: pass --admin-port to get them"
            LOG.warning("the project serves %s under %s: the project wins on the main port; /_fnserve/health, "
                        "/ready and /metrics are served %s", ", ".join(conflicts), PREFIX, where)
        self.front.admin = None if conflicts or admin_port is not None else self.admin

    async def install(self, config: Config, project: Any, python: Path | None, *, restart_all: bool) -> str:
        """Make the supervisor and the front app serve ``config``/``project`` (module docstring,
        SIGHUP). Returns a summary for the reload line."""
        self.config, self.project, self.python = config, project, python
        if config.read_only_code:  # instances cannot write bytecode (issue 10 item 9): compile the snapshot's once
            await asyncio.to_thread(compile_bytecode, python or Path(sys.executable), self.root / PYCACHE, project.root)
        new = self.targets()
        before = dict(self._installed)
        union = {**self._installed, **new}
        changed = set(await self.supervisor.update(list(union.values())))
        assert self.app is not None
        site = self.site()
        self.app.swap(site)
        if self.router is not None:
            self.router.swap(site)
        removed = set(union) - set(new)
        if removed:
            await self.supervisor.update(list(new.values()))
        added = set(new) - set(self._installed)
        self._installed = new
        self._mount_admin(self._admin_port)
        parts = []
        if restart_all:
            same = sorted(set(new) - changed - added)
            results = await self.supervisor.restart(same) if same else {}
            failed = [fid for fid, res in results.items() if res.error is not None]
            started = [fid for fid, res in results.items() if res.error is None and res.ready_ms is not None]
            if started or failed:
                parts.append(f"{len(started)} running function(s) restarted" + (f", {len(failed)} FAILED to load: "
                             + ", ".join(failed) if failed else ""))
        why = [restart_reason(before.get(fid), new[fid]) for fid in sorted(changed) if fid in new]
        for reason, text in (("code", "on the new version"), ("python", "on a new Python environment"),
                             ("environment", "for a changed environment"), ("settings", "for changed settings")):
            if why.count(reason):  # the cause, not "environment changed" for every new snapshot
                parts.append(f"{why.count(reason)} restarted {text}")
        if added:
            parts.append("new: " + ", ".join(sorted(added)))
        if removed:
            parts.append("removed: " + ", ".join(sorted(removed)))
        return "; ".join(parts) or "nothing to restart"

    async def reload(self) -> None:
        """SIGHUP: load everything again; keep the previous version on any error."""
        started = time.perf_counter()
        self.say("reload: SIGHUP received, reloading config, project and dependencies")
        try:
            config, project = await asyncio.to_thread(self.load)  # the snapshot copy stays off the event loop
            python = await self.environment(config)
            collected = await self.collect_static(config, project, python)
        except FnserveError as exc:
            self.metrics.reloads["failed"] += 1
            LOG.error("reload failed, still serving the previous version: %s", exc)
            return
        fixed = [name for name in RESTART_ONLY if getattr(config, name) != getattr(self.config, name)]
        if fixed:
            LOG.warning("reload: %s changed; that takes a restart of fnserve start (kept: %s)", ", ".join(fixed),
                        ", ".join(f"{n}={getattr(self.config, n)}" for n in fixed))
            # the running values stay in the installed config: the next SIGHUP warns again, and
            # what reads self.config (the dashboard, the next comparison) sees what is in effect
            kept = {n: getattr(self.config, n) for n in fixed}
            config = dataclasses.replace(config, **kept, sources={**config.sources, **{
                n: self.config.sources.get(n, "default") for n in fixed}})
        if (config.read_only_code, config.writable_path) != (self.config.read_only_code, self.config.writable_path):
            for problem in confinement_problems(self.root, config, self.user):  # as at start, for the new values
                LOG.warning("%s", problem)
        self.collected = collected
        summary = await self.install(config, project, python, restart_all=True)
        self.metrics.reloads["ok"] += 1
        self.say(f"reload: done ({summary}) [{(time.perf_counter() - started) * 1000:.0f} ms]")

    # ------------------------------------------------------------------ serving
    async def serve(self) -> None:
        """Load, print the route table and URL(s), serve until SIGTERM/SIGINT (module docstring).
        Raises ``FnserveError`` for problems found before serving."""
        import uvicorn

        from fnserve.project.report import render_text

        loop = asyncio.get_running_loop()
        events: asyncio.Queue[int] = asyncio.Queue()
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.add_signal_handler(signum, events.put_nowait, signum)  # handlers only enqueue
        config = self.config  # validated once, before anything started (__init__)
        for problem in confinement_problems(self.root, config, self.user):
            LOG.warning("%s", problem)
        for gone in self.snapshots.sweep():
            LOG.info("removed %s (left by an fnserve start that is no longer running)", gone)
        project = self.load_project(config)
        python = await self.environment(config)
        self.collected = await self.collect_static(config, project, python)
        grace = float(config.grace_period)
        self.supervisor = Supervisor(policy="autoscale", launcher=ZygoteLauncher(),
                                     heartbeat_timeout=config.heartbeat_timeout or None, load_retry=config.load_retry,
                                     max_requests=config.max_requests, max_requests_jitter=config.max_requests_jitter,
                                     max_failures=config.max_failures,
                                     rlimits={"nofile": config.instance_max_open_files,
                                              "nproc": config.instance_max_processes},
                                     start_timeout=30.0, stop_timeout=max(grace, 1.0), direct=config.direct_path)
        from fnserve.server.frontdoor import KEEP_ALIVE, FrontLimits  # imports uvicorn: only when serving

        self._limits = FrontLimits.from_config(config)
        if config.direct_path:
            from fnserve.server.direct import DirectRouter

            self.router = DirectRouter(self.supervisor, self._limits, metrics=self.metrics, feed=self.feed,
                                       max_duration=self._max_duration, keep_alive=KEEP_ALIVE)
        observed = ObservedSupervisor(self.supervisor, self.metrics)
        # limits (maxDuration, memory, queue) are enforced by Supervisor.serve from the targets' limits
        self.app = FrontApp(Site(routes=None), SupervisorDispatcher(observed), dev=False,
                            access_log=AccessLog(self.metrics, self.feed))
        self.admin = AdminApp(lambda: self.state, self.metrics, status_of(self.supervisor),
                              failed=self.supervisor.failed_loads)
        self.front = Observed(self.app, None, public_errors=True)
        self._admin_port = config.admin_port  # fixed for the run (RESTART_ONLY)
        sockets = [bind(config.host, config.port)]
        if config.admin_port is not None:
            sockets.append(bind(config.host, config.admin_port))
        try:
            self.say(render_text(project, config.vercel).rstrip("\n"))
            await self.install(config, project, python, restart_all=False)
            await self.supervisor.start()  # zygotes and min_instances warm now, not at the first request
            servers = [self._uvicorn(uvicorn, self.front, grace, self.router)]
            if len(sockets) > 1:
                servers.append(self._uvicorn(uvicorn, self._admin_app(), 1.0))
            tasks = [loop.create_task(s.serve(sockets=[sock])) for s, sock in zip(servers, sockets)]
            self.state = "ready"
            announce(LOG, "fnserve start: %s", _url(config.host, sockets[0]))
            if len(sockets) > 1:
                self.say(f"fnserve start: admin endpoints on {_url(config.host, sockets[1])}{PREFIX}")
                if self.feed is not None:
                    self.say(f"dashboard: {_url(config.host, sockets[1])}{PREFIX}")
            control = loop.create_task(self.control(events, servers[0], grace))
            try:
                await tasks[0]  # returns after should_exit and the drain (or if startup failed)
            finally:
                self.state = "draining"
                control.cancel()
                # the admin port keeps answering (ready: 503) while the instances stop
                remaining = 0.0 if servers[0].force_exit else max(1.0, grace - self._drain_elapsed())
                await self.supervisor.shutdown(remaining)
                for server in servers[1:]:
                    server.should_exit = True
                await asyncio.gather(*tasks[1:], return_exceptions=True)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
            for sock in sockets:
                sock.close()
            await self.supervisor.shutdown(0.0)  # a second call only cleans up what is left
            self.snapshots.close()
        self.say("fnserve start: stopped")

    def _admin_app(self) -> Any:
        """The admin port's app: ``AdminApp``, behind the dashboard with ``dashboard = true``."""
        if self.feed is None:
            return self.admin
        from fnserve.server.dashboard.view import StateSource
        from fnserve.server.dashboard.web import DashboardApp

        self.feed.attach_logging()  # detached by run_start
        source = StateSource(project=lambda: self.project, status=self.supervisor.status,
                             load_error=self.supervisor.load_error, command="start")
        return DashboardApp(self.feed, source, admin=self.admin, stopping=lambda: self.state == "draining")

    def _max_duration(self, function_id: str) -> float | None:
        """The function's ``maxDuration`` in s (None: none), as its pool enforces it."""
        pool = self.supervisor.pools.pools.get(function_id)
        return pool.limits.max_duration if pool is not None else None

    def _uvicorn(self, uvicorn: Any, app: Any, grace: float, router: Any = None) -> Any:
        from fnserve.server.frontdoor import uvicorn_options  # imports uvicorn: only when serving

        config = uvicorn.Config(
            app, ws="websockets-sansio", lifespan="off", access_log=False, log_config=None,
            timeout_graceful_shutdown=grace, server_header=False, proxy_headers=False,
            **uvicorn_options(self._limits, router),  # httptools + front-door limits (issue 10), direct path
        )
        return _QuietUvicornServer.make(config)

    _drain_started: float | None = None

    def _drain_elapsed(self) -> float:
        return 0.0 if self._drain_started is None else time.monotonic() - self._drain_started

    async def control(self, events: asyncio.Queue[int], main: Any, grace: float) -> None:
        """The loop that acts on signals (the handlers only enqueue): one reload at a time,
        SIGHUPs arriving during a reload coalesce into one more; SIGTERM/SIGINT start the drain
        at once, a second one forces the exit."""
        reloading: asyncio.Task[None] | None = None
        again = False
        loop = asyncio.get_running_loop()
        while True:
            getter = loop.create_task(events.get())
            waits = {getter} | ({reloading} if reloading is not None else set())
            done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            if reloading is not None and reloading in done:
                _log_failure(reloading)
                reloading = None
                if again and self.state == "ready":
                    again = False
                    reloading = loop.create_task(self.reload())
            if getter not in done:
                getter.cancel()
                continue
            signum = getter.result()
            if signum == signal.SIGHUP:
                if self.state != "ready":
                    continue
                if reloading is None:
                    reloading = loop.create_task(self.reload())
                else:
                    again = True
            elif self.state == "ready":
                self.state = "draining"
                if self.front is not None:
                    self.front.draining = True
                if self.router is not None:
                    self.router.enabled = False  # no new connection goes to an instance
                    self.router.closing = True
                    self.supervisor.refresh_direct_plans()  # held ones come back at their next request (503)
                self._drain_started = time.monotonic()
                self.say(f"fnserve start: {signal.Signals(signum).name} received, finishing in-flight "
                         f"requests (up to {grace:g} s; send it again to stop at once)")
                if reloading is not None:
                    reloading.cancel()
                main.should_exit = True
            else:
                self.say(f"fnserve start: {signal.Signals(signum).name} received again, stopping now")
                main.force_exit = True


def _user_of(config: Config) -> dict[str, Any] | None:
    """``resolve_user(config.user)``, None without ``--user``. Raises ``ConfigError`` when fnserve
    does not run as root or there is no such user."""
    if not config.user:
        return None
    source = config.sources.get("user", "user")
    if os.geteuid() != 0:
        raise ConfigError(source, "user", f"running instances as {config.user!r} needs fnserve start to run as root "
                          f"(it runs as uid {os.geteuid()})", "start fnserve as root, or leave --user out")
    try:
        return resolve_user(config.user)
    except (KeyError, ValueError, OverflowError) as exc:
        raise ConfigError(source, "user", f"no user {config.user!r} on this machine",
                          "an existing login name or numeric uid (see /etc/passwd)") from exc


def confinement_problems(root: Path, config: Config, user: Mapping[str, Any] | None) -> list[str]:
    """What ``read_only_code`` cannot protect here, one warning each (empty when all is well):
    no Landlock (kernel < 5.13 or disabled) without the root + ``--user`` fallback, a project
    folder beneath a folder functions may write (``/tmp``)."""
    if not config.read_only_code:
        return []
    problems = []
    if landlock_abi() == 0 and not (user and os.geteuid() == 0):
        problems.append(
            "read-only-code: this kernel has no Landlock (Linux >= 5.13 with landlock among its LSMs), so functions "
            "can write to the project folder (public/, other functions' sources) and every file the user running "
            "fnserve can write; fix: a kernel with Landlock, or run fnserve start as root with --user (a read-only "
            "bind mount of the project is used then)")
    writable = ["/tmp", "/dev", *(str(root / w) for w in config.writable_path)]
    for folder in writable:
        if root == Path(folder) or Path(folder) in root.parents:
            problems.append(f"read-only-code: the project folder {root} is inside {folder}, which functions may "
                            "write to: it is not read-only to them; move the project out of it")
    return problems


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        exc = task.exception()
        LOG.error("reload failed, still serving the previous version: %s", exc, exc_info=exc)


def _url(host: str, sock: Any) -> str:
    port = sock.getsockname()[1]
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def run_start(project_dir: Path, overrides: Mapping[str, Any] | None = None, *,
              from_output: Path | None = None) -> int:
    """Entry point of ``fnserve start``: log handlers on the ``fnserve`` logger (text or JSON per
    ``--log-format``), the server on uvloop. ``from_output``: a ``fnserve build`` output to serve
    instead of ``project_dir`` (``fnserve.build.serve``). Returns the exit code: 0 after a
    signal-initiated shutdown, 2 for a problem found at start (message on stderr: a bad flag,
    ``FNSERVE_*`` variable or project file is ``error: <source>: <setting>: ...`` with what is
    allowed), 1 for a bug of ours."""
    try:  # the config is validated before anything starts (the log handlers need log_format)
        server = _from_output_server(from_output, overrides) if from_output is not None \
            else StartServer(project_dir, overrides)
    except FnserveError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    config = server.config
    logs = install(config.log_format, level=config.log_level, quiet=config.quiet, access=config.access_log,
                   environ=os.environ)  # the entry point: where NO_COLOR / FORCE_COLOR are read
    set_dumpable(False)  # issue 10 item 8: same-user processes (functions) cannot read our memory or environment
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(server.serve())
        else:
            uvloop.run(server.serve())
    except FnserveError as exc:
        logs.exit_error(LOG, str(exc))
        return exc.exit_code
    except Exception as exc:
        logs.exit_error(LOG, "fnserve start stopped on an internal error (please report it)", exc)
        return 1
    finally:
        server.snapshots.close()  # also when serve() stopped before serving (port in use): no snapshot left behind
        if server.feed is not None:
            server.feed.detach_logging()
        logs.remove()
    return 0


def _from_output_server(output: Path, overrides: Mapping[str, Any] | None) -> StartServer:
    """``fnserve start --from OUTPUT`` (owner: build): a ``StartServer`` that reads the build's
    manifest instead of scanning a project; its config comes from the output's project copy.
    Raises ``OutputFormatError`` for an unknown format, then ``ConfigError``."""
    from fnserve.build.serve import FromOutputServer

    return FromOutputServer(output, overrides)
