"""``fnserve build``: write the target-neutral build output (SPEC §8, §8.2; issue 11).

``build_output(config, ...)`` produces ``OUTPUT`` (default ``<project>/.fnserve/output``)::

    OUTPUT/manifest.json      routes, functions, envs, rules (``fnserve.build.manifest``), written last
    OUTPUT/report.json        sizes per function (``fnserve.build.sizes``)
    OUTPUT/project/           the project files the functions need (SPEC §8.2 exclusions, excludeFiles /
                              includeFiles), configuration files included; copies, not links
    OUTPUT/static/            ``public/``, as the build command left it
    OUTPUT/envs/<key>/        the dependencies: a relocatable venv (``uv venv --relocatable``) whose
                              site-packages is hard-linked from the project's env (copied across
                              file systems); shared by every function with that env

Steps: inputs hash (unchanged → nothing to do) → work copy in ``OUTPUT/../.<name>.tmp-<pid>/project``
→ ``installCommand`` there → dependencies (``fnserve.deps.ensure_env`` on the project, the same env
``fnserve dev``/``start`` use) → ``buildCommand`` there, with the env's ``bin/`` first on ``PATH``
→ project model of the work copy (any function with an error stops the build) → file selection →
env copy → report → manifest → the temporary folder is renamed to ``OUTPUT`` (a previous
output is replaced only then) → targets render from it. Any failure removes the temporary folder: nothing half-written is
left, and the previous output, if any, stays as it was. Nothing in the user's project is written
except ``.fnserve/`` (the env cache and the default output).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fnserve import __version__
from fnserve.build.collect import NEVER_COPIED, STATIC_DIR, Selection, copy_tree, select_files
from fnserve.build.exceptions import BuildError, OutputFormatError
from fnserve.build.manifest import (
    MANIFEST_NAME,
    EnvRecord,
    FunctionRecord,
    Manifest,
    RouteRecord,
    read_manifest,
    write_manifest,
)
from fnserve.build.sizes import FunctionSize, function_size, package_sizes, render_text, tree_bytes
from fnserve.build.targets import DEFAULT_TARGET, TARGETS, TargetOptions
from fnserve.config import Config
from fnserve.errors import ProjectError

Say = Callable[[str], None]
REPORT_NAME = "report.json"


@dataclass(frozen=True)
class BuildResult:
    """``output``: the output folder; ``manifest``: what it holds; ``sizes``: per function
    (empty when ``reused``); ``reused``: True when the inputs were unchanged and nothing was
    written; ``seconds``: wall time of the build."""

    output: Path
    manifest: Manifest
    sizes: tuple[FunctionSize, ...] = ()
    reused: bool = False
    seconds: float = 0.0
    warnings: tuple[str, ...] = field(default=())


def default_output(project_dir: Path) -> Path:
    """``<project>/.fnserve/output`` (SPEC §8.2)."""
    return Path(project_dir).resolve() / ".fnserve" / "output"


def build_output(config: Config, *, out: Path | None = None, targets: Sequence[str] = (DEFAULT_TARGET,),
                 say: Say | None = None, environ: Mapping[str, str] | None = None, force: bool = False,
                 target_options: TargetOptions | None = None) -> BuildResult:
    """Build the project of ``config`` (a ``fnserve.config.Config``, ideally loaded with
    ``mode="build"``) into ``out`` (default ``default_output``). ``targets``: names of
    ``TARGETS`` rendered after the output is complete; ``say``: one line for a person; ``environ``:
    the process environment (read once, by the caller); ``force``: rebuild even when the inputs
    are unchanged; ``target_options``: what every target is built with (``--image``; part of the
    inputs hash). Raises ``BuildError`` (a command failed: ``.step``, ``.exit_status``), ``ProjectError``, ``ConfigError``, ``DependencyError``; the previous output is then intact."""
    started = time.perf_counter()
    say = say or (lambda _line: None)
    environ = dict(os.environ if environ is None else environ)
    unknown = [t for t in targets if t not in TARGETS]
    if unknown:
        raise BuildError("targets", f"unknown target(s): {', '.join(unknown)}", f"known targets: {', '.join(TARGETS)}")
    root = Path(config.project_dir).resolve()
    out = Path(out).resolve() if out is not None else default_output(root)
    if out == root or root.is_relative_to(out):
        raise BuildError("output", f"--out {out} would contain the project", "choose a folder inside .fnserve/ or elsewhere")
    target_options = target_options or TargetOptions()
    inputs = inputs_hash(root, config, out, targets, target_options)
    previous = _previous_manifest(out)
    if previous is not None and previous.inputs == inputs and not force:
        say(f"build: unchanged since the last build, {out} is up to date")
        for name in (t for t in targets if not TARGETS[t](target_options).is_current(out, previous)):  # e.g. deleted since
            TARGETS[name](target_options).render(out, previous, say)
        return BuildResult(out, previous, reused=True, seconds=time.perf_counter() - started)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = root / ".fnserve"
    if out.is_relative_to(state) and not (state / ".gitignore").exists():
        (state / ".gitignore").write_text("# fnserve's own state; never commit it\n*\n")
    try:
        manifest, sizes = _build_into(tmp, root, config, out, previous, inputs, say, environ)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for name in targets:  # from the complete output; each target writes its own files atomically
        TARGETS[name](target_options).render(out, manifest, say)
    warnings = tuple(w for w in (s.warning() for s in sizes) if w)
    seconds = time.perf_counter() - started
    say(render_text(sizes))
    say(f"build: {out} written in {seconds:.2f} s ({len(manifest.functions)} function(s), {len(manifest.routes)} route(s))")
    return BuildResult(out, manifest, tuple(sizes), False, seconds, warnings)


def _build_into(tmp: Path, root: Path, config: Config, out: Path, previous: Manifest | None, inputs: str,
                say: Say, environ: dict[str, str]) -> tuple[Manifest, list[FunctionSize]]:
    from fnserve.deps import DepsOptions, ensure_env
    from fnserve.project import load_project
    from fnserve.supervisor.target import function_env, interpreter_env

    work = tmp / "project"
    commands = bool(config.build_command or config.vercel.install_command)
    # links from the previous output only when no command runs in the work copy (it could edit them)
    stats = copy_tree(root, work, skip=(out, tmp), reuse=None if commands else _reuser(out, previous))
    base_env = function_env(config.function_env(), environ)
    if config.vercel.install_command:
        run_command("installCommand", config.vercel.install_command, work, base_env, say)
    env = ensure_env(root, DepsOptions.from_config(config, environ), progress=lambda m: say(f"deps: {m}"))
    if config.build_command:
        run_command("buildCommand", config.build_command, work, interpreter_env(dict(base_env), env.python), say)
    project = load_project(work, entrypoint=config.entrypoint, framework=config.framework)
    refuse_errors(project)

    def globs(fid: str) -> tuple[str | None, str | None]:
        limits = config.limits_for(fid)
        return limits.include_files, limits.exclude_files

    selection = select_files(work, [f.id for f in project.functions], globs)
    file_bytes = {rel: (work / rel).lstat().st_size for rel in selection.kept | set(selection.dropped)}
    _prune(work, selection)
    if (work / STATIC_DIR).is_dir():
        os.rename(work / STATIC_DIR, tmp / "static")
    else:
        (tmp / "static").mkdir()
    from fnserve.server.collectstatic import collect_for_build  # SPEC §4: Django's collected files in static/

    for url in collect_for_build(project, env.python if env.key != "none" else None, base_env, tmp / "static",
                                 tmp / ".collectstatic"):
        say(f"django: collectstatic → static{url}")
    envs: dict[str, EnvRecord] = {}
    packages: dict[str, int] = {}
    if env.key != "none":
        record = copy_env(env, tmp, environ)
        envs[env.key] = record
        packages = package_sizes(tmp / record.site_packages)
        say(f"deps: {len(packages)} package(s), {record.bytes} bytes, in {record.path}")
    else:
        say(f"deps: install is off: functions will run with the interpreter of fnserve start ({sys.executable})")
    sizes, records = [], []
    for fn in project.functions:
        files = selection.functions[fn.id]
        excluded = [(rel, file_bytes[rel]) for rel in selection.excluded[fn.id]]
        size = function_size(fn.id, {r: file_bytes[r] for r in files}, packages, excluded)
        sizes.append(size)
        records.append(_function_record(fn, work, config, env.key if envs else None, files, size.total))
    static_files = [p for p in (tmp / "static").rglob("*") if p.is_file()]
    manifest = Manifest(
        fnserve=__version__, created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), inputs=inputs,
        source=str(root), zero_config=project.zero_config,
        config_files=tuple(sorted(r for r in selection.kept if r in _config_names(config, root))),
        rules=raw_rules(config), build_command=config.build_command, install_command=config.vercel.install_command,
        static={"dir": "static", "files": len(static_files), "bytes": sum(p.stat().st_size for p in static_files)},
        routes=tuple(RouteRecord(r.pattern, tuple((s.kind, s.value) for s in r.segments), r.function.id,
                                 r.function.entry.kind.value if r.function.entry else None, r.mount, r.alias)
                     for r in project.routes.routes),
        functions=tuple(records), envs=envs,
        extra={"stats": {rel: [info.st_size, info.st_mtime_ns] for rel, info in sorted(stats.items())
                         if rel in selection.kept}},
    )
    (tmp / REPORT_NAME).write_text(json.dumps({
        "fnserve": __version__, "limit_bytes": sizes[0].to_json()["limit_bytes"] if sizes else None,
        "functions": [s.to_json() for s in sizes],
        "warnings": [w for w in (s.warning() for s in sizes) if w],
        "dropped_files": dict(selection.dropped),
    }, indent=2) + "\n")
    write_manifest(tmp, manifest)  # last: an output without it is not an output
    return manifest, sizes


def refuse_errors(project: Any) -> None:
    """Raise ``ProjectError`` when a function file of ``project`` has an error (a build, like
    ``fnserve start``, serves all or nothing)."""
    errors = [p for p in project.problems if p.severity == "error"]
    if errors:
        listed = "; ".join(f"{p.file + ': ' if p.file else ''}{p.message}" for p in errors[:5])
        raise ProjectError(f"{len(errors)} function(s) cannot be built: {listed}",
                           "fix them (see `fnserve routes`); a build needs every function to be valid")


def _function_record(fn: Any, work: Path, config: Config, env_key: str | None, files: tuple[str, ...],
                     total: int) -> FunctionRecord:
    entry = fn.entry
    limits = config.limits_for(fn.id)
    data = {k: getattr(limits, k) for k in ("max_duration", "memory", "concurrency", "min_instances",
                                            "max_instances", "idle_timeout", "queue_size", "include_files",
                                            "exclude_files")}
    data["concurrency_asgi"] = config.limits_for(fn.id, asgi=True).concurrency
    roots = tuple(r.relative_to(work).as_posix() if r != work else "." for r in fn.import_roots)
    return FunctionRecord(fn.id, fn.module, entry.attr, entry.kind.value, entry.line, tuple(entry.methods),
                          fn.layout.value, roots, data, env_key, files, total)


def _config_names(config: Config, root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in config.files if p.is_relative_to(root)}


def raw_rules(config: Config) -> dict[str, Any]:
    """The routing keys of vercel.json / edgeone.json as written (for targets that translate
    them; ``start --from`` compiles them from the copied file instead)."""
    out: dict[str, Any] = {}
    for path in config.vercel.files:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, ValueError):
            continue
        for key in ("redirects", "rewrites", "headers", "cleanUrls", "trailingSlash", "routes"):
            if isinstance(data, dict) and key in data:
                out[key] = data[key]
    return out


def run_command(step: str, command: str, cwd: Path, env: Mapping[str, str], say: Say) -> None:
    """Run a project's ``installCommand``/``buildCommand`` with ``sh -c`` in ``cwd`` (the build's
    work copy), its output passed line by line to ``say``. Raises ``BuildError`` naming the
    command and its exit status when it fails."""
    say(f"{step}: running `{command}` (in the build's copy of the project)")
    try:
        proc = subprocess.Popen(["/bin/sh", "-c", command], cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as exc:
        raise BuildError(step, f"{step} `{command}` could not be started: {exc}", "check the command") from exc
    assert proc.stdout is not None
    for line in proc.stdout:
        say(f"  | {line.rstrip()}")
    status = proc.wait()
    if status != 0:
        raise BuildError(step, f"{step} `{command}` failed with exit status {status}; nothing was written",
                         "fix the command (it ran in a copy of the project with the project's env first on PATH)",
                         exit_status=status)


def copy_env(env: Any, tmp: Path, environ: Mapping[str, str]) -> EnvRecord:
    """The project's env as ``tmp/envs/<key>``: a relocatable venv for the same interpreter whose
    site-packages is hard-linked from ``env.site_packages`` (``__pycache__``, ``*.pyc`` and the
    virtualenv's own ``_virtualenv.*`` left out). Raises ``BuildError`` when uv fails."""
    from fnserve.deps.uv import Uv, default_uv_binary, summarize_error

    rel = f"envs/{env.key}"
    dest = tmp / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    uv = Uv(default_uv_binary(), environ)
    proc = uv.run(["venv", "--quiet", "--relocatable", "--no-python-downloads", "--python", str(env.python), str(dest)])
    if proc.returncode != 0:
        raise BuildError("output", f"uv could not create the output's environment from {env.python}:\n"
                         f"{summarize_error(proc.stderr)}", "check that the project's environment still works (fnserve deps)")
    found = sorted(dest.glob("lib/python*/site-packages"))
    if not found:
        raise BuildError("output", f"{dest}: no site-packages after `uv venv`", "report this as a bug")
    site = found[0]
    for entry in Path(env.site_packages).iterdir():
        if entry.name.startswith("_virtualenv") or entry.name == "__pycache__" or (site / entry.name).exists():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, site / entry.name, symlinks=True, copy_function=_link_or_copy,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            _link_or_copy(entry, site / entry.name)
    version = next((line.split("=", 1)[1].strip() for line in (dest / "pyvenv.cfg").read_text().splitlines()
                    if line.startswith("version_info")), "")
    return EnvRecord(env.key, rel, f"{rel}/bin/python", site.relative_to(tmp).as_posix(), version,
                     str(Path(env.python).resolve()), tuple(env.requirements), tree_bytes(site))


def _link_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def _prune(work: Path, selection: Selection) -> None:
    """Remove from the work copy what no function needs (``public/`` stays: it becomes ``static/``)."""
    static = set(selection.static)
    for rel in list(selection.dropped):
        if rel not in static:
            (work / rel).unlink()
    for dirpath, dirnames, _files in os.walk(work, topdown=False):
        for name in dirnames:
            folder = Path(dirpath) / name
            if name == "__pycache__":
                shutil.rmtree(folder, ignore_errors=True)
            elif not folder.is_symlink() and not any(folder.iterdir()):
                folder.rmdir()


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _previous_manifest(out: Path) -> Manifest | None:
    if not (out / MANIFEST_NAME).is_file():
        return None
    try:
        return read_manifest(out)
    except OutputFormatError:
        return None


def _reuser(out: Path, previous: Manifest | None) -> Callable[[str, os.stat_result], Path | None] | None:
    """For ``copy_tree``: a file unchanged since the previous output (same size and mtime) is
    hard-linked from that output's ``project/`` instead of copied (incremental builds)."""
    if previous is None:
        return None
    stats: dict[str, list[int]] = previous.extra.get("stats", {}) if previous.extra else {}
    if not stats:
        return None

    def reuse(rel: str, info: os.stat_result) -> Path | None:
        known = stats.get(rel)
        if known is None or known != [info.st_size, info.st_mtime_ns]:
            return None
        candidate = out / "project" / rel
        return candidate if candidate.is_file() else None

    return reuse


def inputs_hash(root: Path, config: Config, out: Path, targets: Sequence[str],
                target_options: TargetOptions | None = None) -> str:
    """sha256 of everything a build reads: every file the work copy would get (path, size,
    mtime, mode), the effective settings, the build/install commands, the targets, fnserve's
    version. Stats files only (no reads), so an unchanged rebuild costs one walk of the tree."""
    from fnserve.config import SETTINGS

    digest = hashlib.sha256()
    head = {"fnserve": __version__, "targets": list(targets), "out": str(out),
            "target_options": repr(target_options or TargetOptions()),
            "settings": {s.name: repr(getattr(config, s.name, None)) for s in SETTINGS},
            "build": config.build_command, "install": config.vercel.install_command,
            "python": sys.executable}
    digest.update(json.dumps(head, sort_keys=True).encode())
    skipped = {out.resolve()}
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if d not in NEVER_COPIED and not d.startswith(".")
                             and (here / d).resolve() not in skipped)
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            info = os.lstat(here / name)
            rel = (here / name).relative_to(root).as_posix()
            digest.update(f"{rel}\0{info.st_size}\0{info.st_mtime_ns}\0{info.st_mode}\n".encode())
    return digest.hexdigest()
