"""The ``vercel`` target: Build Output API v3 in ``<project>/.vercel/output/`` (issue 11 part 3),
the one folder ``vercel deploy --prebuilt`` uploads. Rendered from a finished build output::

    .vercel/output/config.json            {"version": 3, "routes": [...], "overrides": {...}}
                                          (``vercel_routes``: fnserve's route table and vercel.json
                                          rules in fnserve's = Vercel's order)
    .vercel/output/static/                the build's ``static/`` (``public/``)
    .vercel/output/functions/<name>.func/ one per function (``vercel_func``)

Dependencies: the requirements of the function's env (or, built with ``--no-install``, of the
project's plan) plus ``vercel-runtime`` pinned, installed once per env with ``uv pip install
--target --python-platform x86_64-manylinux_2_28 --python-version 3.12`` and hard-linked into each
``.func/_vendor``. Environment (``.vc-config.json`` ``environment``): vercel.json ``env``, then
``.env`` and ``.env.production`` (files a project commits); **never** ``.env.local`` or
``.env.production.local`` (machine-local secrets): their variable names are listed in a warning
(set them in the Vercel project: ``vercel env add NAME production``), and no ``.env*`` file is
copied into a ``.func``.

Written in ``.vercel/.output.tmp-<pid>`` and renamed into place (a previous ``.vercel/output`` is
replaced only then); nothing else under ``.vercel/`` or in the project is touched. Errors
(``BuildError``, exit 2, nothing left half-written): a requirement uv cannot resolve for the
target platform (named), a ``.func`` over 250 MB (its largest contributors named).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from fnserve.build.exceptions import BuildError
from fnserve.build.sizes import SIZE_LIMIT, human, package_sizes, tree_bytes
from fnserve.build.staging import staged_folder
from fnserve.build.targets import Target, written_after_manifest
from fnserve.build.targets.vercel_func import VENDOR_DIR, link_tree, write_func
from fnserve.build.targets.vercel_routes import clean_url_overrides, config_routes, func_name

if TYPE_CHECKING:
    from fnserve.build.manifest import Manifest

#: The launcher every ``.func`` runs with (PyPI ``vercel-runtime``), pinned: the trampoline
#: drives its ``vc_init`` module through ``__VC_HANDLER_*`` variables, a private interface.
VERCEL_RUNTIME = "vercel-runtime==0.24.1"
PLATFORM = "x86_64-manylinux_2_28"
PYTHON_VERSION = "3.12"
COMMITTED_ENV_FILES = (".env", ".env.production")
LOCAL_ENV_FILES = (".env.local", ".env.production.local")


class VercelTarget(Target):
    """``fnserve build --target vercel`` (see the module docstring)."""

    name = "vercel"
    description = "Build Output API v3 in .vercel/output/ for `vercel deploy --prebuilt`"

    def render(self, output: Path, manifest: Manifest, say: Callable[[str], None]) -> list[Path]:
        project = Path(manifest.source)
        dest = project / ".vercel" / "output"
        created = not dest.parent.exists()
        environ = dict(os.environ)  # boundary: the build's process environment, read once
        try:
            with staged_folder(dest) as tmp:
                environment = function_environment(output / "project", say)
                vendors = {key: resolve_vendor(reqs, tmp / ".vendor" / key, environ, say)
                           for key, reqs in requirement_sets(output, manifest, environ).items()}
                link_tree(output / "static", tmp / "static")
                for function in manifest.functions:
                    folder = tmp / "functions" / (func_name(function) + ".func")
                    routes = [r for r in manifest.routes if r.function == function.id]
                    write_func(folder, function, routes, output / "project", vendors.get(function.env or ""),
                               environment)
                    check_size(folder, function.id)
                config: dict[str, object] = {"version": 3, "routes": config_routes(manifest)}
                if manifest.rules.get("cleanUrls"):
                    static = [p.relative_to(tmp / "static").as_posix() for p in (tmp / "static").rglob("*")
                              if p.is_file()]
                    config["overrides"] = clean_url_overrides(static)
                (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
                shutil.rmtree(tmp / ".vendor", ignore_errors=True)
        except BaseException:
            if created and dest.parent.is_dir() and not any(dest.parent.iterdir()):
                dest.parent.rmdir()  # leave the project as it was
            raise
        say(f"target vercel: {dest} ({len(manifest.functions)} function(s), Python {PYTHON_VERSION}, "
            f"{VERCEL_RUNTIME}); deploy it with `vercel deploy --prebuilt` from {project}")
        return [dest]

    def is_current(self, output: Path, manifest: Manifest) -> bool:
        """``.vercel/output/config.json`` exists and was written after the build's manifest."""
        return written_after_manifest(Path(manifest.source) / ".vercel" / "output" / "config.json", output)


def requirement_sets(output: Path, manifest: Manifest, environ: Mapping[str, str]) -> dict[str, list[str]]:
    """Env key → requirement lines, for every env a function uses. Functions without an env
    (``--no-install`` builds) get the requirements fnserve would install, under key ``""``."""
    sets: dict[str, list[str]] = {}
    for function in manifest.functions:
        key = function.env or ""
        if key in sets:
            continue
        if function.env is not None and function.env in manifest.envs:
            from fnserve.deps.manifests import read_manifests  # --index-url & co. of requirements files

            index_args = read_manifests((output / "project").resolve()).index_args
            sets[key] = [*index_args, *manifest.envs[function.env].requirements]
        else:
            sets[key] = planned_requirements(output / "project", environ)
    return sets


def planned_requirements(project: Path, environ: Mapping[str, str]) -> list[str]:
    """The requirement lines ``fnserve.deps`` plans for the build's project copy (nothing installed;
    its caches go to a temporary folder). Raises ``DependencyError`` for a bad manifest."""
    import tempfile

    from fnserve.deps import DepsOptions, plan_deps

    with tempfile.TemporaryDirectory(prefix="fnserve-vercel-plan-") as state:
        plan = plan_deps(project, DepsOptions(install=False, environ=dict(environ), state_dir=Path(state)))
        return [*plan.index_args, *plan.merged.lines()]


def resolve_vendor(requirements: list[str], target: Path, environ: Mapping[str, str],
                   say: Callable[[str], None]) -> Path:
    """Install ``requirements`` + ``VERCEL_RUNTIME`` into ``target`` for Linux x86_64 / CPython
    3.12 (``uv pip install --target``). Raises ``BuildError`` naming the requirement uv could not
    resolve or install for that platform."""
    from fnserve.deps.uv import Uv, default_uv_binary, failing_requirement, summarize_error

    target.mkdir(parents=True)
    lines = [*requirements, VERCEL_RUNTIME]
    uv = Uv(default_uv_binary(), environ)
    say(f"target vercel: resolving {len(lines)} requirement(s) for {PLATFORM} / CPython {PYTHON_VERSION}")
    proc = uv.run(["pip", "install", "--quiet", "--no-python-downloads", "--target", str(target),
                   "--python-platform", PLATFORM, "--python-version", PYTHON_VERSION, *lines])
    if proc.returncode != 0:
        names = [_name(line) for line in lines if not line.startswith("-") and "://" not in line]
        culprit = failing_requirement(proc.stderr, names) or "a requirement"
        raise BuildError("vercel", f"target vercel: {culprit} cannot be installed for Linux x86_64 / CPython "
                         f"{PYTHON_VERSION} ({PLATFORM}):\n{summarize_error(proc.stderr)}",
                         f"pin a version of {culprit} that publishes a manylinux x86_64 / py3 wheel for "
                         "Python 3.12, or remove it from the project's requirements")
    (target / ".lock").unlink(missing_ok=True)  # uv's, not a dependency
    return target


def _name(line: str) -> str:
    name = line.split(";")[0].strip()
    for sep in "<>=!~[ @":
        name = name.split(sep)[0]
    return name.lower().replace("_", "-")


def function_environment(project: Path, say: Callable[[str], None]) -> dict[str, str]:
    """The ``environment`` of every ``.func``: vercel.json ``env``, then the committed ``.env``
    files of the build's ``project`` copy (later wins). Local files are left out with a warning
    naming their variables (never their values)."""
    from dotenv import dotenv_values

    env: dict[str, str] = {}
    try:
        data = json.loads((project / "vercel.json").read_text())
        if isinstance(data, dict) and isinstance(data.get("env"), dict):
            env.update({str(k): str(v) for k, v in data["env"].items()})
    except (OSError, ValueError):
        pass
    for name in COMMITTED_ENV_FILES:
        if (project / name).is_file():
            env.update({k: v for k, v in dotenv_values(project / name, interpolate=False).items() if v is not None})
    for name in LOCAL_ENV_FILES:
        if (project / name).is_file():
            keys = sorted(k for k in dotenv_values(project / name, interpolate=False) if k not in env)
            if keys:
                say(f"target vercel: warning: {name} is not deployed (local secrets); set {', '.join(keys)} in the "
                    "Vercel project (`vercel env add NAME production`)")
    return env


def check_size(folder: Path, function_id: str) -> None:
    """Raise ``BuildError`` when the ``.func`` ``folder`` is over Vercel's 250 MB, naming its five
    largest contributors (packages of ``_vendor``, files)."""
    total = tree_bytes(folder)
    if total <= SIZE_LIMIT:
        return
    vendor = folder / VENDOR_DIR
    parts = {f"package {n}": b for n, b in (package_sizes(vendor) if vendor.is_dir() else {}).items()}
    for path in folder.rglob("*"):
        if path.is_file() and vendor not in path.parents:
            parts[f"file {path.relative_to(folder).as_posix()}"] = path.lstat().st_size
    largest = sorted(parts.items(), key=lambda item: -item[1])[:5]
    raise BuildError("vercel", f"target vercel: {function_id} is {human(total)}, over Vercel's "
                     f"{human(SIZE_LIMIT)} function limit; largest: "
                     + ", ".join(f"{name} ({human(size)})" for name, size in largest),
                     "remove unused packages or add an excludeFiles glob for this function in vercel.json; "
                     ".vercel/output was not written")
