"""Target ``lambda``: one zip per function and a SAM template (issue 11 item 3; docs/DEPLOY.md).

``fnserve build --target lambda`` renders, from the finished output::

    OUTPUT/lambda/template.yaml            AWS SAM template (JSON, which is YAML too): one
                                           AWS::Serverless::Function per fnserve function, its
                                           routes as HttpApi events on the implicit HTTP API
    OUTPUT/lambda/functions/<name>.zip     one per function:
        fnserve_lambda.py                  the handler (``lambda_entry.py``): Handler fnserve_lambda.handler
        fnserve_lambda.json                the function (module, attr, kind, layout, import roots,
                                           limits), its routes in priority order, its environment
                                           variables (vercel.json ``env``, ``.env`` files)
        _fnserve_runtime/                  fnserve's stdlib runtime (``fnserve/runtime/``), as is
        _vendor/                           the function env's requirements resolved for Lambda:
                                           ``uv pip install --target --python-platform
                                           x86_64-manylinux_2_28 --python-version X.Y``, the
                                           versions of the build's env as constraints
        <project files>                    the function's files (its ``files`` in the manifest)

One zip per function (not per env): each Lambda function gets exactly its own files
(``excludeFiles``/``includeFiles`` honoured), and SAM's one ``CodeUri`` per function stays simple;
the dependencies are resolved once per env and copied into each zip. The Lambda Python is the
env's (``python3.X``; 3.9–3.13), 3.12 for a build without an env (``--no-install``).
A function over 250 MB unzipped (Lambda's limit) is a ``BuildError`` naming its largest parts.
Limits: ``memory`` → ``MemorySize`` (128–10240 MB), ``maxDuration`` → ``Timeout`` (≤ 900 s),
``minInstances`` > 0 → provisioned concurrency on an alias ``live``. Everything is written in a
temporary folder renamed to ``OUTPUT/lambda`` at the end; any failure leaves no ``lambda/``.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import stat
import zipfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

from fnserve import __version__
from fnserve.build.exceptions import BuildError
from fnserve.build.manifest import EnvRecord, FunctionRecord, Manifest, RouteRecord
from fnserve.build.staging import staged_folder
from fnserve.build.targets import Target, TargetOptions, written_after_manifest
from fnserve.build.targets import lambda_entry as entry

LAMBDA_DIR = "lambda"
TEMPLATE_NAME = "template.yaml"
HANDLER = "fnserve_lambda.handler"
ENTRY_MODULE = "fnserve_lambda.py"
PLATFORM = "x86_64-manylinux_2_28"  # Lambda's python3.9+ runtimes (Amazon Linux 2 / 2023, glibc ≥ 2.26)
LAMBDA_PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")
DEFAULT_PYTHON = "3.12"
MEMORY_RANGE = (128, 10240)  # MB
MAX_TIMEOUT = 900  # s
UNZIPPED_LIMIT = 250 * 1024 * 1024  # bytes: Lambda's limit for a zip package, unzipped (with layers)
RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtime"
_SKIP = ("__pycache__",)


def lambda_python(env: EnvRecord | None) -> str:
    """``"3.X"``: the Lambda Python for ``env`` (its interpreter's major.minor; ``DEFAULT_PYTHON``
    without an env). Raises ``BuildError`` when Lambda has no runtime for it."""
    if env is None:
        return DEFAULT_PYTHON
    version = ".".join(env.python_version.split(".")[:2])
    if version not in LAMBDA_PYTHONS:
        raise BuildError("lambda", f"the project's Python is {env.python_version}; AWS Lambda runs Python "
                         f"{', '.join(LAMBDA_PYTHONS)}",
                         "choose one for the project: fnserve build --python 3.12 (or .python-version)")
    return version


def installed_versions(site_packages: Path) -> dict[str, str]:
    """Canonical distribution name → version of what ``site_packages`` holds (its ``*.dist-info``)."""
    out: dict[str, str] = {}
    for info in site_packages.glob("*.dist-info"):
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        if version:
            out[re.sub(r"[-_.]+", "-", name).lower()] = version
    return out


def resolve_deps(env: EnvRecord, output: Path, dest: Path, python: str, environ: Mapping[str, str]) -> None:
    """Install ``env.requirements`` into ``dest`` for Lambda (Linux x86_64, CPython ``python``),
    preferring the versions of the build's env (``output/env.site_packages``) as constraints.
    Raises ``BuildError`` naming the requirement uv could not resolve for that platform."""
    from packaging.requirements import InvalidRequirement, Requirement

    from fnserve.deps.uv import Uv, default_uv_binary, failing_requirement, summarize_error

    dest.mkdir(parents=True, exist_ok=True)
    if not env.requirements:
        return
    names = []
    for req in env.requirements:
        try:
            names.append(re.sub(r"[-_.]+", "-", Requirement(req).name).lower())
        except InvalidRequirement:
            continue
    constraints = dest.parent / f"{dest.name}.constraints.txt"
    pins = installed_versions(output / env.site_packages)
    constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    args = ["pip", "install", "--quiet", "--no-python-downloads", "--target", str(dest),
            "--python-platform", PLATFORM, "--python-version", python, "--constraint", str(constraints),
            "--", *env.requirements]
    try:
        proc = Uv(default_uv_binary(), environ).run(args)
    finally:
        constraints.unlink(missing_ok=True)
    if proc.returncode != 0:
        name = failing_requirement(proc.stderr, names)
        what = f"`{name}`" if name else "the requirements"
        raise BuildError("lambda", f"{what} cannot be installed for AWS Lambda ({PLATFORM}, Python {python}), "
                         f"from env {env.key} ({', '.join(env.requirements)}):\n{summarize_error(proc.stderr)}",
                         "use a version with a Linux x86_64 wheel for that Python (or pure Python), or drop "
                         "the dependency; the versions of your local env are preferred")


def api_paths(route: RouteRecord) -> list[str]:
    """The API Gateway route paths serving fnserve ``route``: ``[id]`` → ``{id}``, a catch-all →
    ``{name+}``, an optional catch-all and a mount → the prefix itself plus ``{…+}`` below it.
    Parameter names keep letters, digits and ``_`` only (the handler matches with fnserve's own
    rules, not with API Gateway's path parameters)."""
    parts: list[str] = []
    for kind, value in route.segments:
        name = re.sub(r"\W", "_", value) or "p"
        if kind == "literal":
            parts.append(value)
        elif kind == "param":
            parts.append("{" + name + "}")
        elif kind == "catchall":
            parts.append("{" + name + "+}")
        else:
            return ["/" + "/".join(parts), "/" + "/".join([*parts, "{" + name + "+}"])]
    path = "/" + "/".join(parts)
    if route.mount:
        return [path, path.rstrip("/") + "/{proxy+}"]
    return [path]


def logical_id(function_id: str, taken: set[str]) -> str:
    """A CloudFormation logical id (letters and digits) for a function: ``api/users/[id].py`` →
    ``ApiUsersIdFunction``; a number is appended when already ``taken`` (which is updated)."""
    stem = function_id[:-3] if function_id.endswith(".py") else function_id
    base = "".join(w[:1].upper() + w[1:] for w in re.split(r"[^A-Za-z0-9]+", stem) if w) or "Root"
    if base[0].isdigit():
        base = "F" + base
    name, n = base + "Function", 2
    while name in taken:
        name, n = f"{base}{n}Function", n + 1
    taken.add(name)
    return name


def zip_name(function_id: str, taken: set[str]) -> str:
    """``api/users/[id].py`` → ``api-users-_id_.zip`` (``_2`` appended when already ``taken``,
    which is updated)."""
    stem = function_id[:-3] if function_id.endswith(".py") else function_id
    base = re.sub(r"[^A-Za-z0-9_-]+", "_", stem.replace("/", "-")) or "function"
    name, n = base, 2
    while name in taken:
        name, n = f"{base}_{n}", n + 1
    taken.add(name)
    return name + ".zip"


def function_config(fn: FunctionRecord, routes: list[RouteRecord], environment: Mapping[str, str] | None = None
                    ) -> dict[str, Any]:
    """``fnserve_lambda.json`` of ``fn`` (see ``lambda_entry``): the function, its routes in
    priority order, each with the ``root_path`` its app sees (an EdgeOne framework mount's prefix),
    and ``environment``: the variables ``fnserve start`` gives the function (vercel.json ``env``,
    ``.env`` files), set at cold start unless Lambda's own configuration already sets them."""
    framework = fn.kind in ("app", "application")
    out_routes = []
    for r in routes:
        prefix = ""
        if framework and fn.layout == "edgeone":
            literals = []
            for kind, value in r.segments:
                if kind != "literal":
                    break
                literals.append(value)
            prefix = "/" + "/".join(literals) if literals else ""
        out_routes.append({"pattern": r.pattern, "segments": [list(s) for s in r.segments], "mount": r.mount,
                           "root_path": prefix})
    return {"fnserve": __version__, "format": 1,
            "function": {"id": fn.id, "module": fn.module, "attr": fn.attr, "kind": fn.kind, "layout": fn.layout,
                         "import_roots": list(fn.import_roots), "max_duration": fn.limits.get("max_duration"),
                         "memory": fn.limits.get("memory")},
            "routes": out_routes, "environment": dict(environment or {})}


def _walk_files(folder: Path) -> Iterator[tuple[Path, str]]:
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP)
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath) / name
            yield path, path.relative_to(folder).as_posix()


def _add(zf: zipfile.ZipFile, path: Path, arcname: str) -> None:
    info = os.stat(path)
    zinfo = zipfile.ZipInfo.from_file(path, arcname)
    zinfo.external_attr = (stat.S_IMODE(info.st_mode) | stat.S_IFREG) << 16
    zinfo.compress_type = zipfile.ZIP_DEFLATED
    with open(path, "rb") as src, zf.open(zinfo, "w") as dst:
        shutil.copyfileobj(src, dst, 1024 * 1024)


def write_function_zip(dest: Path, fn: FunctionRecord, config: dict[str, Any], project: Path,
                       vendor: Path | None) -> int:
    """Write the zip of ``fn`` at ``dest`` (layout: the module docstring); ``project``: the
    output's ``project/``; ``vendor``: the resolved dependencies or None. Returns its size in
    bytes. Raises ``BuildError`` when a file of the function is missing from the output, or when
    the unzipped size would be over ``UNZIPPED_LIMIT`` (Lambda refuses such a package), naming
    the largest contributors; nothing is written then."""
    members = [(Path(entry.__file__), ENTRY_MODULE)]
    members += [(path, f"{entry.RUNTIME_PACKAGE}/{rel}") for path, rel in _walk_files(RUNTIME_DIR) if rel.endswith(".py")]
    if vendor is not None:
        members += [(path, f"{entry.VENDOR_DIR}/{rel}") for path, rel in _walk_files(vendor)]
    for rel in fn.files:
        source = project / rel
        if not source.is_file():
            raise BuildError("lambda", f"{fn.id}: its file {rel} is missing from {project}",
                             "rebuild the output: fnserve build --force")
        members.append((source, rel))
    sizes = [(path.stat().st_size, arcname) for path, arcname in members]
    total = sum(size for size, _ in sizes)
    if total > UNZIPPED_LIMIT:
        groups: dict[str, int] = {}
        for size, arcname in sizes:
            parts = arcname.split("/")
            key = "/".join(parts[:2]) if parts[0] == entry.VENDOR_DIR else arcname
            groups[key] = groups.get(key, 0) + size
        largest = ", ".join(f"{k} {v / 2**20:.1f} MB" for k, v in sorted(groups.items(), key=lambda kv: -kv[1])[:5])
        raise BuildError("lambda", f"{fn.id}: {total / 2**20:.1f} MB unzipped, over AWS Lambda's "
                         f"{UNZIPPED_LIMIT / 2**20:.0f} MB limit for a zip package; largest: {largest}",
                         "leave files out with `excludeFiles` for this function (vercel.json `functions`), "
                         "or drop dependencies it does not need")
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(zipfile.ZipInfo(entry.CONFIG_NAME, (1980, 1, 1, 0, 0, 0)),
                    json.dumps(config, indent=2) + "\n", zipfile.ZIP_DEFLATED)
        for path, arcname in members:
            _add(zf, path, arcname)
    return dest.stat().st_size


def sam_template(manifest: Manifest, functions: list[dict[str, Any]]) -> dict[str, Any]:
    """The SAM template: ``functions`` are ``{"record": FunctionRecord, "logical_id", "code_uri",
    "python", "paths": [API paths]}``. Raises ``BuildError`` for a ``memory`` or ``maxDuration``
    Lambda cannot take (naming the function and the setting)."""
    resources: dict[str, Any] = {}
    for item in functions:
        fn: FunctionRecord = item["record"]
        memory = int(fn.limits.get("memory") or 1024)
        if not MEMORY_RANGE[0] <= memory <= MEMORY_RANGE[1]:
            raise BuildError("lambda", f"{fn.id}: memory {memory} MB is outside what AWS Lambda allows "
                             f"({MEMORY_RANGE[0]}–{MEMORY_RANGE[1]} MB)",
                             "set `memory` for this function in vercel.json `functions` or [tool.fnserve]")
        timeout = math.ceil(float(fn.limits.get("max_duration") or 300))
        if timeout > MAX_TIMEOUT:
            raise BuildError("lambda", f"{fn.id}: maxDuration {timeout} s is over AWS Lambda's {MAX_TIMEOUT} s",
                             "set `maxDuration` to 900 or less for this function")
        events = {f"Route{i}": {"Type": "HttpApi", "Properties": {"Path": path, "Method": "ANY"}}
                  for i, path in enumerate(item["paths"])}
        props: dict[str, Any] = {
            "Description": f"fnserve function {fn.id}", "CodeUri": item["code_uri"], "Handler": HANDLER,
            "Runtime": "python" + item["python"], "Architectures": ["x86_64"], "MemorySize": memory,
            "Timeout": timeout, "Events": events,
        }
        min_instances = int(fn.limits.get("min_instances") or 0)
        if min_instances > 0:
            props["AutoPublishAlias"] = "live"
            props["ProvisionedConcurrencyConfig"] = {"ProvisionedConcurrentExecutions": min_instances}
        resources[item["logical_id"]] = {"Type": "AWS::Serverless::Function", "Properties": props}
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Transform": "AWS::Serverless-2016-10-31",
        "Description": f"fnserve {manifest.fnserve} build of {Path(manifest.source).name} "
                       f"(fnserve build --target lambda; deploy with sam deploy --guided)",
        "Resources": resources,
        "Outputs": {"ApiUrl": {"Description": "the HTTP API serving every function",
                               "Value": {"Fn::Sub": "https://${ServerlessHttpApi}.execute-api.${AWS::Region}."
                                                    "${AWS::URLSuffix}/"}}},
    }


class LambdaTarget(Target):
    """AWS Lambda: a zip per function and a SAM ``template.yaml`` in ``OUTPUT/lambda/``."""

    name = "lambda"
    description = "a zip per function and a SAM template.yaml in OUTPUT/lambda/"

    def __init__(self, options: TargetOptions | None = None, *, environ: Mapping[str, str] | None = None) -> None:
        super().__init__(options)
        # the process environment for uv (its cache and index settings), read once here
        self.environ = dict(os.environ if environ is None else environ)

    def is_current(self, output: Path, manifest: Manifest) -> bool:
        return written_after_manifest(output / LAMBDA_DIR, output)

    def render(self, output: Path, manifest: Manifest, say: Callable[[str], None]) -> list[Path]:
        final = output / LAMBDA_DIR
        with staged_folder(final) as tmp:
            (tmp / "functions").mkdir()
            items = self._render_into(tmp, output, manifest, say)
            template = sam_template(manifest, items)
            (tmp / TEMPLATE_NAME).write_text(json.dumps(template, indent=2) + "\n")
            shutil.rmtree(tmp / ".deps", ignore_errors=True)
        say(f"target lambda: {len(items)} function zip(s) and {final / TEMPLATE_NAME}; "
            f"deploy with `sam deploy --guided --template-file {final / TEMPLATE_NAME}`")
        return [final / TEMPLATE_NAME, *(final / item["code_uri"] for item in items)]

    def _render_into(self, tmp: Path, output: Path, manifest: Manifest, say: Callable[[str], None]) -> list[dict[str, Any]]:
        from fnserve.config import load_config

        # the function environment as `fnserve start --from` computes it, from the copied files
        environment = load_config(output / "project", {}, self.environ, mode="start").function_env()
        vendors: dict[str | None, tuple[Path | None, str]] = {}
        taken: set[str] = set()
        zips: set[str] = set()
        items = []
        for fn in manifest.functions:
            env = manifest.envs.get(fn.env) if fn.env else None
            if fn.env not in vendors:
                python = lambda_python(env)
                vendor = None
                if env is not None:
                    vendor = tmp / ".deps" / env.key
                    say(f"target lambda: resolving {len(env.requirements)} requirement(s) of env {env.key} "
                        f"for {PLATFORM}, Python {python}")
                    resolve_deps(env, output, vendor, python, self.environ)
                vendors[fn.env] = (vendor, python)
            vendor, python = vendors[fn.env]
            routes = [r for r in manifest.routes if r.function == fn.id]
            name = zip_name(fn.id, zips)
            size = write_function_zip(tmp / "functions" / name, fn, function_config(fn, routes, environment),
                                      output / "project", vendor)
            paths = list(dict.fromkeys(p for r in routes for p in api_paths(r)))
            items.append({"record": fn, "logical_id": logical_id(fn.id, taken), "code_uri": f"functions/{name}",
                          "python": python, "paths": paths, "bytes": size})
            say(f"target lambda: {fn.id} → functions/{name} ({size / 1e6:.1f} MB zipped), "
                f"routes {', '.join(paths)}")
        return items
