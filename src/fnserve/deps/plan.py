"""The dependency step as a whole (SPEC §7): plan, then ensure the environment exists.

``plan_deps`` reads manifests, picks the Python, scans imports, merges — no install, no uv process
(unless no Python on disk matches and ``uv python find`` is asked). ``ensure_env`` does that and then
returns the env for the plan's key, creating it only when the key is new.

For ``fnserve dev``: call ``ensure_env`` before serving; when a manifest or import changes, call
``ensure_env_async`` (or ``ensure_env`` in a thread): it builds a NEW env folder while workers keep
running in the old one; when it returns with ``changed=True``, restart the workers with
``env.python``. On ``DependencyError`` keep serving with the old env and show the message.
"""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from fnserve.deps.detect import DetectedImport, scan_project, third_party_imports
from fnserve.deps.envs import Environment, build_env, current_environment, ensure_state_dir, env_key, existing_env
from fnserve.deps.manifests import is_dependency_file, read_manifests
from fnserve.deps.mapping import ImportMap
from fnserve.deps.merge import MergedSet, merge
from fnserve.deps.options import DepsOptions, as_options
from fnserve.deps.progress import Progress
from fnserve.deps.pythons import PythonChoice, UvFetch, UvFind, select_python
from fnserve.deps.uv import Uv, default_uv_binary


@dataclass(frozen=True)
class DepsPlan:
    """What the project needs. ``python``: the chosen interpreter and why; ``merged``: the resolved
    requirement set; ``index_args``: uv index options from requirements files; ``manifests``:
    project-relative names of the files read; ``detected``: third-party imports found (all,
    including optional); ``key``: the env key; ``state_dir``: ``.fnserve``."""

    project_dir: Path
    python: PythonChoice
    merged: MergedSet
    index_args: tuple[str, ...]
    manifests: tuple[str, ...]
    detected: tuple[DetectedImport, ...]
    detect_imports: bool
    key: str
    state_dir: Path

    @property
    def env_path(self) -> Path:
        return self.state_dir / "envs" / self.key

    def ready_env(self) -> Environment | None:
        """The complete env of this plan when it exists (``ensure_env`` would then install
        nothing), else None. Stats a few files; starts no process."""
        return existing_env(self.state_dir / "envs", self.key)


def _uv(options: DepsOptions, environ: dict[str, str]) -> Uv:
    return Uv(options.uv_binary or default_uv_binary(), environ, options.uv_cache_dir)


def plan_deps(project_dir: Path, options: object = None, *, progress: Progress | None = None) -> DepsPlan:
    """Plan the dependency step for ``project_dir``. ``options``: ``DepsOptions``, a ``Config`` or
    None; ``progress``: one-line messages (a Python being fetched). With ``install`` on, a Python
    the project asks for that is not installed is fetched with ``uv python install``; if none can
    be had, ``python_fallback`` (or ``install`` off: no env is built from the plan) takes the
    nearest installed one (``plan.python.warning``). Raises ``DependencyError`` (bad manifest
    line, conflicting requirements, no Python)."""
    opts = as_options(options)
    environ = dict(opts.environ or os.environ)  # boundary: the caller's environment, read once
    root = Path(project_dir).resolve()
    state_dir = opts.state_dir or root / ".fnserve"
    manifests = read_manifests(root)
    uv_bin = opts.uv_binary or default_uv_binary()
    uv_fetch = UvFetch(uv_bin, environ, state_dir / "pythons.json", progress) if opts.install else None
    if uv_fetch is not None:
        ensure_state_dir(state_dir)
    choice = select_python(manifests.python, environ, state_dir / "pythons.json", override=opts.python,
                           uv_find=UvFind(uv_bin, environ), uv_fetch=uv_fetch,
                           fallback=opts.python_fallback or not opts.install)
    detected: list[DetectedImport] = []
    if opts.detect_imports:
        found, local = scan_project(root, state_dir / "imports.json")
        detected = third_party_imports(found, local, choice.interpreter.stdlib)
    import_map = ImportMap.build(opts.import_map)
    merged = merge(manifests.requirements, manifests.constraints, detected, import_map,
                   choice.interpreter.markers)
    index_args = tuple(manifests.index_args)
    return DepsPlan(root, choice, merged, index_args, tuple(dict.fromkeys(manifests.files)),
                    tuple(detected), opts.detect_imports, env_key(choice.interpreter, merged, index_args),
                    state_dir)


def ensure_env(project_dir: Path, options: object = None, *, progress: Progress | None = None,
               plan: DepsPlan | None = None) -> Environment:
    """Return the function environment for ``project_dir`` (SPEC §7), creating it when the
    requirement set or Python changed. ``options``: ``DepsOptions`` / ``Config`` / None;
    ``progress``: called with one-line messages only when work is done (nothing is printed for a
    reused env); ``plan``: a plan already computed. An unchanged set returns in milliseconds with
    ``changed=False`` and starts no process. With ``install`` off, a matching env is still used if
    one exists, else fnserve's own interpreter (``key="none"``). Raises ``DependencyError``; the
    previous env is kept."""
    opts = as_options(options)
    plan = plan or plan_deps(project_dir, opts, progress=progress)
    if plan.python.warning is not None and progress is not None and opts.install:
        progress(f"warning: {plan.python.warning}")
    found = existing_env(plan.state_dir / "envs", plan.key)
    if found is not None:
        return found
    if not opts.install:  # the user manages packages: run with fnserve's interpreter (config: install)
        if progress is not None:
            progress(f"install is off: functions run with {sys.executable} and its packages")
        return current_environment(Path(sys.executable), plan.merged.lines())
    environ = dict(opts.environ or os.environ)
    return build_env(plan.state_dir, plan.key, plan.python.interpreter, plan.merged, plan.index_args,
                     _uv(opts, environ), progress, keep=opts.keep_envs)


def affects_dependencies(project_dir: Path, path: Path, plan: DepsPlan | None = None) -> bool:
    """For the dev server's file watcher: may a change of ``path`` (absolute) change the env?
    True for manifests (and files they include, when ``plan`` lists them), ``.python-version``,
    config files, and Python files outside excluded folders (their imports). Cheap: no parsing."""
    from fnserve.project.layout import is_excluded_dir

    try:
        rel = Path(path).resolve().relative_to(Path(project_dir).resolve())
    except ValueError:
        return False
    if any(is_excluded_dir(part) for part in rel.parts[:-1]):
        return False
    if is_dependency_file(rel.name) or (plan is not None and rel.as_posix() in plan.manifests):
        return True
    return rel.suffix == ".py"


async def ensure_env_async(project_dir: Path, options: object = None, *,
                           progress: Progress | None = None) -> Environment:
    """``ensure_env`` in a worker thread, for the dev server's event loop: the old env stays
    usable until this returns (new keys build in new folders); swap workers when ``changed``.
    ``progress`` is called from that thread."""
    return await asyncio.to_thread(ensure_env, project_dir, options, progress=progress)
