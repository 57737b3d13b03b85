"""The ``fnserve`` command line: click commands only.

Each command parses its arguments, builds one frozen ``Config`` (``fnserve.config``), calls one
function of the package that owns the work, and maps ``FnserveError`` to a message on stderr and
exit code 2. Nothing else lives here.
"""

from __future__ import annotations

import click

from fnserve import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fnserve")
def main() -> None:
    """Run Python serverless functions (Vercel api/, EdgeOne cloud-functions/) on your own machines."""


# Commands are added below, one block per command, each calling into its own package.


# --- fnserve config (issue 2: configuration; owner: config) --------------------------------
from fnserve.config.settings import cli_options as _config_cli_options  # noqa: E402


@main.command("config")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
@click.option("--mode", type=click.Choice(["dev", "start", "build"]), default="dev", show_default=True,
              help="Resolve as this command would (.env.development* vs .env.production*, reload default).")
@_config_cli_options()
def config_command(directory: str, as_json: bool, mode: str, **flags: object) -> None:
    """Print every effective setting of DIRECTORY (default: .), its value and where it came from
    (flag > FNSERVE_* > fnserve.toml / [tool.fnserve] > vercel.json > default), the per-function
    limits, the vercel.json routing rules and the NAMES of the function environment variables
    (values are never shown). Exit 2 with the reason when the configuration is invalid (SPEC §5)."""
    import json
    import os

    from fnserve.config import load_config, overrides_from
    from fnserve.config.report import render_text, to_json
    from fnserve.errors import FnserveError
    from fnserve.project import load_project

    try:
        config = load_config(directory, overrides_from(flags), os.environ, mode=mode)
    except FnserveError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(exc.exit_code) from exc
    try:  # the effective limits of each function; WSGI vs ASGI is known only at load (None)
        project = load_project(config.project_dir, entrypoint=config.entrypoint, framework=config.framework)
        functions = [(f.id, None if f.entry is None or f.entry.kind.is_framework else False)
                     for f in project.functions]
    except FnserveError as exc:
        click.echo(f"note: per-function limits not shown: {exc.message}", err=True)
        functions = []
    click.echo(json.dumps(to_json(config, functions), indent=2) if as_json else render_text(config, functions))


# --- fnserve routes (issue 2: project model; owner: project) ---------------------------------
@main.command("routes")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def routes_command(directory: str, as_json: bool) -> None:
    """Show the routes fnserve makes of DIRECTORY (default: .): route, methods, kind, file,
    exact/mount, then helper modules and warnings. Exit code 0 when the project is valid, 2 when
    it cannot be served or a function file has an error (SPEC §8)."""
    import json
    from pathlib import Path

    from fnserve.config import load_config
    from fnserve.errors import FnserveError
    from fnserve.project import load_project
    from fnserve.project.report import render_text, to_json

    root = Path(directory)
    try:
        config = load_config(root)
        project = load_project(root, entrypoint=config.entrypoint, framework=config.framework)
    except FnserveError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(exc.exit_code) from exc
    click.echo(json.dumps(to_json(project), indent=2) if as_json else render_text(project), nl=not as_json)
    if as_json:
        click.echo()
    if project.has_errors:
        errors = sum(p.severity == "error" for p in project.problems)
        click.echo(f"error: {errors} problem(s) above must be fixed; the other routes still serve", err=True)
        raise click.exceptions.Exit(2)


# --- fnserve deps (issue 5: dependencies; owner: deps) -----------------------------------------
@main.command("deps")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--check", is_flag=True, help="Exit 1 when an import is detected but not declared (CI); installs nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--no-install", is_flag=True, help="Plan only: do not create or update the environment.")
@click.option("--python", "python_request", default=None, help="Python version or interpreter path to use (e.g. 3.12).")
def deps_command(directory: str, check: bool, as_json: bool, no_install: bool, python_request: str | None) -> None:
    """Show the merged requirements of DIRECTORY (default: .) with where each came from, the chosen
    Python and why, and the environment; create or update the environment unless --no-install or
    --check (SPEC §7). Exit 0 when fine, 1 when --check finds undeclared imports, 2 on errors
    (conflicting requirements, no matching Python, failed install)."""
    import json
    import os
    from pathlib import Path

    from fnserve.deps import DepsOptions, ensure_env, plan_deps
    from fnserve.deps.report import check_problems, render_text, to_json
    from fnserve.errors import FnserveError

    root = Path(directory)
    environ = dict(os.environ)
    changes = {"python": python_request} if python_request else {}
    try:
        from fnserve.config import load_config

        options = DepsOptions.from_config(load_config(root, changes, environ), environ, **changes)
        plan = plan_deps(root, options)
        env = None
        if not (check or no_install):
            env = ensure_env(root, options, progress=_say_deps, plan=plan)
    except FnserveError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(exc.exit_code) from exc
    click.echo(json.dumps(to_json(plan, env), indent=2) if as_json else render_text(plan, env))
    if check and check_problems(plan):
        raise click.exceptions.Exit(1)


def _say_deps(message: str) -> None:
    click.echo(f"deps: {message}", err=True)


# --- fnserve dev (issue 4: front server, workers, hot reload; owner: server) ----------------
def _dev_options(func):  # type: ignore[no-untyped-def]
    """The settings flags of ``dev`` (``--port``, ``--host``, ``--install/--no-install``, ...)."""
    from fnserve.config.settings import SETTINGS, cli_options

    return cli_options(*(s.name for s in SETTINGS if "dev" in s.commands))(func)


@main.command("dev")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@_dev_options
def dev_command(directory: str, **flags: object) -> None:
    """Serve DIRECTORY (default: .) for development: static files, vercel.json rules and every
    function in its own worker process; a saved file reloads only the functions it affects.
    Prints the route table and the URL; stops with Ctrl-C (SPEC §8)."""
    from pathlib import Path

    from fnserve.server.dev import run_dev

    overrides = {name: value for name, value in flags.items() if value is not None}
    raise click.exceptions.Exit(run_dev(Path(directory), overrides))


# --- fnserve start (issue 6: production server; owner: server/start) ------------------------
def _start_options(func):  # type: ignore[no-untyped-def]
    """The settings flags of ``start``: every setting whose ``commands`` include "start"."""
    from fnserve.config.settings import SETTINGS, cli_options

    return cli_options(*(s.name for s in SETTINGS if "start" in s.commands))(func)


@main.command("start")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--from", "from_output", default=None, type=click.Path(exists=True, file_okay=False),
              help="Serve this `fnserve build` output instead of DIRECTORY (no scan, no install).")
@_start_options
def start_command(directory: str, from_output: str | None, **flags: object) -> None:
    """Serve DIRECTORY (default: .) in production: every function in its own worker processes,
    .env.production* loaded, access log as text or JSON lines, /_fnserve/health, /_fnserve/ready
    and /_fnserve/metrics (or on --admin-port). SIGTERM/SIGINT drain in-flight requests within
    --grace-period and exit 0; SIGHUP reloads the project without dropping a request. Exit 2 when
    the project, its config or its dependencies have a problem (SPEC §9)."""
    from pathlib import Path

    from fnserve.server.start import run_start

    overrides = {name: value for name, value in flags.items() if value is not None}
    if from_output is not None and directory != ".":
        raise click.UsageError("give either DIRECTORY or --from OUTPUT, not both")
    raise click.exceptions.Exit(run_start(Path(directory), overrides,
                                          from_output=Path(from_output) if from_output else None))


# --- fnserve build (issue 11: build output and targets; owner: build) ------------------------
from collections.abc import Callable  # noqa: E402
from typing import Any  # noqa: E402


def _build_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """The settings flags of ``build``: every setting whose ``commands`` include "build"."""
    from fnserve.config.settings import SETTINGS, cli_options

    return cli_options(*(s.name for s in SETTINGS if "build" in s.commands))(func)


def _check_targets(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...]:
    from fnserve.build.targets import TARGETS

    unknown = [name for name in value if name not in TARGETS]
    if unknown:
        raise click.BadParameter(f"unknown target {', '.join(map(repr, unknown))}; known targets: {', '.join(TARGETS)}",
                                 ctx, param)
    return value


def _check_image(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    from fnserve.build.targets import check_image

    try:
        return None if value is None else check_image(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


@main.command("build")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--target", "targets", multiple=True, default=("fnserve",), show_default=True, callback=_check_targets,
              help="What to render from the build output (repeatable); known: fnserve, knative, kubernetes.")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: DIRECTORY/.fnserve/output).")
@click.option("--force", is_flag=True, help="Rebuild even when nothing changed since the last build.")
@click.option("--image", default=None, callback=_check_image, metavar="NAME",
              help="Container image the knative/kubernetes targets run (default: fnserve-<folder>:latest).")
@_build_options
def build_command(directory: str, targets: tuple[str, ...], out: str | None, force: bool, image: str | None,
                  **flags: object) -> None:
    """Build DIRECTORY (default: .) into a self-contained output: manifest.json (routes, functions,
    limits, rules), the project files (SPEC §8.2 exclusions, excludeFiles/includeFiles), the
    dependencies, static/ (public/) and report.json (sizes; a warning for a function over 250 MB).
    Runs installCommand before and buildCommand after the dependencies, in a copy of the project.
    Serve the result with `fnserve start --from OUTPUT`. Exit 2 on any problem, leaving no output
    behind (a previous one stays as it was)."""
    import os
    from pathlib import Path

    from fnserve.build.output import build_output
    from fnserve.build.targets import TargetOptions
    from fnserve.config import load_config, overrides_from
    from fnserve.errors import FnserveError

    try:
        config = load_config(directory, overrides_from(flags), os.environ, mode="build")
        build_output(config, out=Path(out) if out else None, targets=targets, say=click.echo,
                     environ=os.environ, force=force, target_options=TargetOptions(image=image))
    except FnserveError as exc:
        click.echo(f"error: {exc}", err=True)
        raise click.exceptions.Exit(exc.exit_code) from exc
