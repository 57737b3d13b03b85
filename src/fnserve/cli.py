"""The ``fnserve`` command line: click commands only.

Each command parses its arguments, builds one frozen ``Config`` (``fnserve.config``), calls one
function of the package that owns the work, and maps ``FnserveError`` to a message on stderr and
exit code 2. Nothing else lives here.

Every command's setting flags come from the registry: ``command_options("<command>")`` adds the
flag of each setting whose ``commands`` include the command (``--help`` lists only those, with
choices such as ``--log-format [text|json]`` and bools as ``--x/--no-x``); values are validated
once, by ``load_config``, whose ``ConfigError`` names the setting and its source.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from fnserve import __version__
from fnserve.config import MODES, Config, command_options, load_config, overrides_from
from fnserve.errors import FnserveError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fnserve")
def main() -> None:
    """Run Python serverless functions (Vercel api/, EdgeOne cloud-functions/) on your own machines."""


def _fail(exc: FnserveError) -> NoReturn:
    """``error: <message>`` (and its hint) on stderr, then the error's exit code (2)."""
    click.echo(f"error: {exc}", err=True)
    raise click.exceptions.Exit(exc.exit_code) from exc


def _config(directory: str, flags: dict[str, object], mode: str = "dev") -> Config:
    """The ``Config`` of ``directory`` from the given flags, ``os.environ`` (read here, once) and
    the project files; a ``FnserveError`` exits 2 with its message."""
    try:
        return load_config(directory, overrides_from(flags), os.environ, mode=mode)
    except FnserveError as exc:
        _fail(exc)


# Commands are added below, one block per command, each calling into its own package.


# --- fnserve config (issue 2: configuration; owner: config) --------------------------------
@main.command("config")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the configuration as JSON.")
@click.option("--mode", type=click.Choice(MODES), default="dev", show_default=True,
              help="Resolve as this command would (.env.development* vs .env.production*, reload default).")
@command_options("config")
def config_command(directory: str, as_json: bool, mode: str, **flags: object) -> None:
    """Print every effective setting of DIRECTORY (default: .), its value and where it came from
    (flag > FNSERVE_* > fnserve.toml / [tool.fnserve] > vercel.json > default), the per-function
    limits, the vercel.json routing rules and the NAMES of the function environment variables
    (values are never shown). Exit 2 with the reason when the configuration is invalid (SPEC §5)."""
    import json

    from fnserve.config.show import render_text, to_json
    from fnserve.project import load_project

    config = _config(directory, flags, mode)
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
@command_options("routes")
def routes_command(directory: str, as_json: bool, **flags: object) -> None:
    """Show the routes fnserve makes of DIRECTORY (default: .): route, methods, kind, file,
    exact/mount, then helper modules and warnings. Exit code 0 when the project is valid, 2 when
    it cannot be served or a function file has an error (SPEC §8)."""
    import json

    from fnserve.project import load_project
    from fnserve.project.report import render_text, to_json

    config = _config(directory, flags)
    try:
        project = load_project(Path(directory), entrypoint=config.entrypoint, framework=config.framework)
    except FnserveError as exc:
        _fail(exc)
    click.echo(json.dumps(to_json(project, config.vercel), indent=2) if as_json else render_text(project, config.vercel),
               nl=not as_json)
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
@command_options("deps")
def deps_command(directory: str, check: bool, as_json: bool, **flags: object) -> None:
    """Show the merged requirements of DIRECTORY (default: .) with where each came from, the chosen
    Python and why, and the environment; create or update the environment unless install is off
    (--no-install: plan only) or --check (SPEC §7). Exit 0 when fine, 1 when --check finds
    undeclared imports, 2 on errors (conflicting requirements, no matching Python, failed install)."""
    import json

    from fnserve.deps import DepsOptions, ensure_env, plan_deps
    from fnserve.deps.progress import command_progress
    from fnserve.deps.summary import check_problems, render_text, to_json

    config = _config(directory, flags)
    options = DepsOptions.from_config(config, dict(os.environ))
    try:
        plan = plan_deps(Path(directory), options)
        env = None
        if options.install and not check:
            with command_progress(sys.stderr, "deps: ") as progress:  # a live line on a terminal (issue 13)
                env = ensure_env(Path(directory), options, progress=progress, plan=plan)
    except FnserveError as exc:
        _fail(exc)
    click.echo(json.dumps(to_json(plan, env), indent=2) if as_json else render_text(plan, env))
    if check and check_problems(plan):
        raise click.exceptions.Exit(1)


# --- fnserve dev (issue 4: front server, workers, hot reload; owner: server) ----------------
@main.command("dev")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@command_options("dev")
def dev_command(directory: str, **flags: object) -> None:
    """Serve DIRECTORY (default: .) for development: static files, vercel.json rules and every
    function in its own worker process; a saved file reloads only the functions it affects.
    Prints the route table and the URL; stops with Ctrl-C. A bad flag or FNSERVE_* variable
    exits 2; a broken project file is shown until a save fixes it (SPEC §8)."""
    from fnserve.server.dev import run_dev

    raise click.exceptions.Exit(run_dev(Path(directory), overrides_from(flags)))


# --- fnserve start (issue 6: production server; owner: server/start) ------------------------
@main.command("start")
@click.argument("directory", default=".", type=click.Path(exists=True, file_okay=False))
@click.option("--from", "from_output", default=None, type=click.Path(exists=True, file_okay=False),
              help="Serve this `fnserve build` output instead of DIRECTORY (no scan, no install).")
@command_options("start")
def start_command(directory: str, from_output: str | None, **flags: object) -> None:
    """Serve DIRECTORY (default: .) in production: every function in its own worker processes,
    .env.production* loaded, access log as text or JSON lines, /_fnserve/health, /_fnserve/ready
    and /_fnserve/metrics (or on --admin-port). SIGTERM/SIGINT drain in-flight requests within
    --grace-period and exit 0; SIGHUP reloads the project without dropping a request. Exit 2 when
    the project, its config or its dependencies have a problem (SPEC §9)."""
    from fnserve.server.start import run_start

    if from_output is not None and directory != ".":
        raise click.UsageError("give either DIRECTORY or --from OUTPUT, not both")
    raise click.exceptions.Exit(run_start(Path(directory), overrides_from(flags),
                                          from_output=Path(from_output) if from_output else None))


# --- fnserve build (issue 11: build output and targets; owner: build) ------------------------
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
              help="What to render from the build output (repeatable): fnserve, vercel, knative, kubernetes, container, lambda.")
@click.option("--out", "out", default=None, type=click.Path(file_okay=False),
              help="Output folder (default: DIRECTORY/.fnserve/output).")
@click.option("--force", is_flag=True, help="Rebuild even when nothing changed since the last build.")
@click.option("--image", default=None, callback=_check_image, metavar="NAME",
              help="Container image the container target builds (with podman/docker) and knative/kubernetes run "
                   "(default: fnserve-<folder>:latest).")
@command_options("build")
def build_command(directory: str, targets: tuple[str, ...], out: str | None, force: bool, image: str | None,
                  **flags: object) -> None:
    """Build DIRECTORY (default: .) into a self-contained output: manifest.json (routes, functions,
    limits, rules), the project files (SPEC §8.2 exclusions, excludeFiles/includeFiles), the
    dependencies, static/ (public/) and report.json (sizes; a warning for a function over 250 MB).
    Runs installCommand before and buildCommand after the dependencies, in a copy of the project.
    Serve the result with `fnserve start --from OUTPUT`. Exit 2 on any problem, leaving no output
    behind (a previous one stays as it was)."""
    from fnserve.build.output import build_output
    from fnserve.build.targets import TargetOptions
    from fnserve.deps.progress import command_progress

    config = _config(directory, flags, mode="build")
    try:
        with command_progress(sys.stdout) as say:  # a live line on a terminal (issue 13)
            build_output(config, out=Path(out) if out else None, targets=targets, say=say,
                         environ=os.environ, force=force, target_options=TargetOptions(image=image))
    except FnserveError as exc:
        _fail(exc)


# --- fnserve init (issue 13: templates; owner: init) ------------------------------------------
def _template_names() -> list[str]:
    from fnserve.init import TEMPLATES

    return list(TEMPLATES)


@main.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@click.option("--template", "-t", "template", type=click.Choice(_template_names()), default="handler",
              show_default=True, help="What to start from (see --list).")
@click.option("--layout", type=click.Choice(("vercel", "edgeone")), default=None,
              help="Where functions live: vercel (api/) or edgeone (cloud-functions/). Default: vercel.")
@click.option("--force", is_flag=True, help="Write into a non-empty folder; files that exist are kept and listed.")
@click.option("--list", "list_only", is_flag=True, help="List the templates and exit.")
def init_command(directory: str, template: str, layout: str | None, force: bool, list_only: bool) -> None:
    """Create a project in DIRECTORY (default: .; created when missing) from a template: its
    functions, requirements.txt, public/index.html, a .gitignore for .fnserve/ and a README on
    running and building it. Refuses a non-empty folder unless --force (which never overwrites:
    existing files are kept and named). Exit 2 on a problem."""
    from fnserve.init import TEMPLATES, write_project

    if list_only:
        width = max(map(len, TEMPLATES))
        for item in TEMPLATES.values():
            click.echo(f"{item.name:<{width}}  {item.summary} [{', '.join(item.layouts)}]")
        return
    try:
        result = write_project(Path(directory), template, layout, force=force)
    except FnserveError as exc:
        _fail(exc)
    chosen = layout or TEMPLATES[template].layouts[0]
    click.echo(f"fnserve init: {template} template ({chosen} layout) in {result.root}")
    for rel in result.written:
        click.echo(f"  created  {rel}")
    for rel in result.appended:
        click.echo(f"  appended .fnserve/ to {rel}")
    for rel in result.kept:
        click.echo(f"  kept     {rel} (it exists; the template's version was not written)")
    step = "" if Path(directory).resolve() == Path.cwd() else f"cd {directory} && "
    click.echo(f"next: {step}fnserve dev   (then: fnserve build, fnserve start)")
