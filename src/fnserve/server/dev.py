"""``fnserve dev``: the front app on uvicorn, one worker per function, hot reload (SPEC §8).

``run_dev(project_dir, overrides)`` is what the CLI calls. It never exits on user error: a bad
``vercel.json``, a duplicate route or a function that does not import is shown (start-up output,
and a 500 page naming the file for the requests it affects) until a save fixes it.

``DevServer`` holds the state of one run — config, project model, the front app's ``Site``, the
``Supervisor`` — and the reload operations ``Reloader`` drives (``apply(plan)``). Order of a
reload, chosen for zero failed requests across a save:

1. reload config (if a config file changed) and rebuild the project model (always: cheap, and a
   save may add or remove an entry);
2. ``supervisor.update(old ∪ new targets)`` (new functions known, changed envs restarted), then
   swap the ``Site`` atomically, then ``update(new)`` (removed functions drained and stopped);
3. ``supervisor.restart(dependents of the changed files)``: requests arriving meanwhile wait for
   the new instance while the old one finishes what it has in flight.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fnserve.errors import FnserveError
from fnserve.project import load_project
from fnserve.project.types import Function
from fnserve.server.accesslog import install_dev_handlers
from fnserve.server.app import FrontApp, Site, SiteProblem, static_for
from fnserve.server.dispatch import SupervisorDispatcher
from fnserve.server.reloader import Plan, Reloader
from fnserve.server.rules import from_config
from fnserve.supervisor import Supervisor
from fnserve.supervisor.target import WorkerTarget

LOG = logging.getLogger("fnserve.dev")


class DevServer:
    """One ``fnserve dev`` run over ``project_dir``. ``overrides``: setting name → value from
    explicitly given CLI flags; ``say``: prints one line for a person (default: ``fnserve.dev``
    logger at INFO)."""

    def __init__(self, project_dir: Path, overrides: Mapping[str, Any] | None = None,
                 *, say: Callable[[str], None] | None = None) -> None:
        self.root = Path(project_dir).resolve()
        self.overrides = dict(overrides or {})
        self.say = say or LOG.info
        self.config: Any = None
        self.config_problem: SiteProblem | None = None
        self.project: Any = None
        self.project_problem: SiteProblem | None = None
        self.python: Path | None = None
        self.routes_of: dict[str, str] = {}
        self.supervisor = Supervisor(start_timeout=30.0, stop_timeout=5.0)
        self.app = FrontApp(Site(routes=None), SupervisorDispatcher(self.supervisor), dev=True,
                            on_shutdown=(self.supervisor.shutdown,))
        self._deps_task: asyncio.Task | None = None
        self.log_handlers: list[tuple[logging.Logger, logging.Handler]] = []  # set by serve()
        self._installed: dict[str, WorkerTarget] = {}

    # ------------------------------------------------------------------ settings
    def setting(self, name: str, default: Any = None) -> Any:
        """A setting's effective value: the config's, else the CLI override, else ``default``."""
        if self.config is not None and hasattr(self.config, name):
            return getattr(self.config, name)
        return self.overrides.get(name, default)

    def body_limit(self) -> int:
        """Request body limit in bytes (SPEC §5 default 4.5 MB when the config is unusable)."""
        value = self.setting("body_limit", 4_718_592)
        return value if isinstance(value, int) else 4_718_592

    # ------------------------------------------------------------------ loading
    def load_config(self) -> None:
        """(Re)load the config; on error keep the previous one and record the problem."""
        try:
            from fnserve.config import load_config
        except ImportError:  # config package not available: defaults only
            return
        try:
            self.config = load_config(self.root, self.overrides, mode="dev")
            self.config_problem = None
        except FnserveError as exc:
            self.config_problem = SiteProblem(f"configuration error: {exc.message}", str(exc))
            self.say(f"error: {exc}")

    def load_project(self) -> None:
        """(Re)build the project model; on a project-wide error keep serving static files and
        answer 500 naming the problem for every function request."""
        try:
            project = load_project(self.root, entrypoint=self.setting("entrypoint"), framework=self.setting("framework"))
        except FnserveError as exc:
            self.project_problem = SiteProblem(f"the project cannot be served: {exc.message}", str(exc))
            self.say(f"error: {exc}")
            return
        self.project, self.project_problem = project, None
        self.routes_of = {}
        for route in project.routes.routes:
            self.routes_of.setdefault(route.function.id, route.pattern)

    def site(self) -> Site:
        """The ``Site`` for the current config and project."""
        vercel = getattr(self.config, "vercel", None)
        rules = from_config(vercel)
        problem = self.config_problem or self.project_problem
        return Site(
            routes=self.project.routes if self.project is not None and self.project_problem is None else None,
            rules=rules,
            static=static_for(self.root, rules.clean_urls),
            problem=problem,
            body_limit=self.body_limit(),
        )

    def targets(self) -> list[WorkerTarget]:
        """One ``WorkerTarget`` per function of the current project, with its limits from
        ``Config.limits_for`` as in ``fnserve start`` (the supervisor enforces ``max_duration``
        and ``memory``; dev's single-instance policy overrides the instance counts and queue)."""
        if self.project is None:
            return []
        config = self.config
        env = config.function_env() if config is not None else {}
        return [
            WorkerTarget.from_function(
                f, self.root, python=self.python, env=env, body_limit=self.body_limit(),
                limits=None if config is None else lambda kind, fid=f.id: config.limits_for(fid, asgi=kind == "asgi"))
            for f in self.project.functions
        ]

    async def ensure_deps(self) -> None:
        """Install the project's requirements when ``install`` is on; the interpreter of that env
        runs the workers. With ``install`` off the current interpreter is used."""
        if not self.setting("install", False):
            self.python = None
            return
        try:
            from fnserve.deps import ensure_env_async
        except ImportError:
            return
        try:
            env = await ensure_env_async(self.root, self.config, progress=lambda m: self.say(f"deps: {m}"))
        except FnserveError as exc:
            self.say(f"error: dependencies: {exc}")
            self.say("  functions keep running with the previous environment (or this interpreter)")
            return
        self.python = env.python

    async def install(self) -> set[str]:
        """Make the supervisor and the front app agree with the current model (see module doc).
        Returns the ids the supervisor restarted because their target changed."""
        new = self.targets()
        if self.project_problem is not None:  # keep the last good workers; requests get the 500
            self.app.swap(self.site())
            return set()
        union = {**self._installed, **{t.id: t for t in new}}
        restarted = await self.supervisor.update(union.values())
        self.app.swap(self.site())
        if set(union) != {t.id for t in new}:
            await self.supervisor.update(new)
        self._installed = {t.id: t for t in new}
        return set(restarted)

    # ------------------------------------------------------------------ reload
    async def apply(self, plan: Plan) -> str:
        """Apply one batch of file changes (driven by ``Reloader``). Returns the line to print."""
        started = time.perf_counter()
        what = plan.describe(self.root)
        old = self.project
        if plan.config:
            self.load_config()
        if plan.deps and self.setting("install", False):
            self._reinstall_in_background(what)
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
        results = await self.supervisor.restart(sorted(affected)) if affected else {}
        parts = []
        for fid in sorted(affected):
            res = results.get(fid)
            if res is None or (res.ready_ms is None and res.error is None):
                parts.append(f"{fid} (idle, loads on next request)")
            elif res.error is not None:
                reason = getattr(res.error, "message", None) or str(res.error) or type(res.error).__name__
                parts.append(f"{fid} FAILED to load: {reason.strip().splitlines()[0] if reason.strip() else reason}")
            else:
                parts.append(f"{fid} ready in {res.ready_ms:.0f} ms")
        if restarted:
            names = sorted(restarted)
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            parts.append(f"environment changed for {shown}: new instances get it")
        if old is not None and self.project is not None:
            parts += [f"new function {fid}" for fid in sorted(known - before)]
            parts += [f"removed {fid}" for fid in sorted(before - known)]
        if plan.deps:
            parts.append("reinstalling dependencies in the background" if self.setting("install", False)
                         else "install is off (--no-install): requirements are not applied")
        if self.config_problem or self.project_problem:
            parts.append("ERROR: " + (self.config_problem or self.project_problem).message)  # type: ignore[union-attr]
        summary = "; ".join(parts) or "nothing to restart"
        return f"reload: {what} changed → {summary} [{(time.perf_counter() - started) * 1000:.0f} ms]"

    def _reinstall_in_background(self, what: str) -> None:
        if self._deps_task is not None and not self._deps_task.done():
            self._deps_task.cancel()

        async def job() -> None:
            before = self.python
            await self.ensure_deps()
            if self.python != before:
                restarted = await self.install()
                self.say(f"deps: {what} → new environment; restarted {', '.join(sorted(restarted)) or 'nothing'}")

        self._deps_task = asyncio.get_running_loop().create_task(job())

    def route_of(self, function_id: str) -> str | None:
        """The route pattern shown in front of a function's output lines."""
        return self.routes_of.get(function_id)

    def functions(self) -> tuple[Function, ...]:
        return self.project.functions if self.project is not None else ()


def forget_bytecode(path: Path) -> None:
    """Delete ``__pycache__/<name>.*.pyc`` of a saved module. Python trusts a ``.pyc`` whose
    recorded source mtime (whole seconds) and size match, so two same-size saves within one
    second would otherwise give the restarted worker the previous code."""
    cache = path.parent / "__pycache__"
    if not cache.is_dir():
        return
    for pyc in cache.glob(f"{path.stem}.*.pyc"):
        try:
            pyc.unlink()
        except OSError:
            pass  # read-only tree: the worker may load stale bytecode for up to a second


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: any free port). Raises ``FnserveError``
    when the port is taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise FnserveError(f"port {port} is in use on {host}", "pass --port (0 picks a free port)") from exc
        raise FnserveError(f"cannot listen on {host}:{port}: {exc.strerror}", "check --host") from exc
    sock.listen(2048)
    sock.setblocking(False)
    return sock


async def serve(dev: DevServer) -> None:
    """Load everything, print the route table and the URL, serve until SIGINT/SIGTERM."""
    import uvicorn

    from fnserve.project.report import render_text

    dev.load_config()
    dev.log_handlers = install_dev_handlers(dev.route_of, json_lines=dev.setting("log_format") == "json")
    dev.load_project()
    await dev.ensure_deps()
    if dev.project is not None:
        dev.say(render_text(dev.project).rstrip("\n"))
    await dev.install()
    host = str(dev.setting("host", "127.0.0.1"))
    try:  # without a valid config the raw --port string is all there is
        port = int(dev.setting("port", 3000))
    except (TypeError, ValueError):
        raise FnserveError(f"--port: {dev.setting('port')!r} is not a port number", "pass --port 0-65535") from None
    sock = bind(host, port)
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        dev.app, http="httptools", ws="websockets-sansio", lifespan="on", access_log=False, log_config=None,
        timeout_graceful_shutdown=3, server_header=False, proxy_headers=False,
    )
    server = uvicorn.Server(config)
    stop = asyncio.Event()
    watcher = None
    if dev.setting("reload", True):
        reloader = Reloader(dev.root, dev.apply, emit=dev.say)
        watcher = asyncio.get_running_loop().create_task(reloader.run(stop))
    shown = f"[{host}]" if ":" in host else host
    dev.say(f"fnserve dev: http://{shown}:{port}")
    try:
        await server.serve(sockets=[sock])
    finally:
        stop.set()
        if watcher is not None:
            watcher.cancel()
        await dev.supervisor.shutdown()
        sock.close()


def run_dev(project_dir: Path, overrides: Mapping[str, Any] | None = None) -> int:
    """Entry point of ``fnserve dev``: sets up dev's own log handlers (fnserve loggers only),
    runs the server on uvloop. Returns the exit code (0 after Ctrl-C; 2 if it cannot listen)."""
    dev = DevServer(project_dir, overrides, say=lambda line: print(line, flush=True))
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(serve(dev))
        else:
            uvloop.run(serve(dev))
    except FnserveError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 0
    except Exception:
        traceback.print_exc()
        return 1
    finally:
        for logger, handler in dev.log_handlers:
            logger.removeHandler(handler)
    return 0
