"""``container`` target: a ``Containerfile`` and its build context in ``OUTPUT/container/`` (issue 11
item 3), and the image itself with ``--image NAME`` when podman or docker is on ``PATH``.

The image runs ``fnserve start --from /app/output --host 0.0.0.0 --port $PORT`` (``PORT`` default
8080) as uid/gid 1000, with ``HEALTHCHECK`` on ``/_fnserve/health`` and ``STOPSIGNAL SIGTERM``
(fnserve drains in-flight requests, then exits 0): the contract the ``knative``/``kubernetes``
targets rely on. The context::

    OUTPUT/container/Containerfile
    OUTPUT/container/dist/fnserve-<v>-py3-none-any.whl   the running fnserve, packed as a wheel
    OUTPUT/container/fnserve/                            its site-packages for the image's Python:
                                                         the wheel + dependencies (``uv pip install
                                                         --target``), pinned to the versions of the
                                                         installation that built it
    OUTPUT/container/envs/<key>/lib/pythonX.Y/site-packages/   each function env's packages
    OUTPUT/container/app/                                manifest.json, report.json, project/, static/

**Decision (envs inside the image).** The output's envs are venvs whose ``bin/python`` links to
the build machine's interpreter. The image recreates each one with the image's own Python
(``python3 -m venv --without-pip`` over the copied site-packages, at the same path, so
``start --from`` finds ``envs/<key>/bin/python``); fnserve gets a venv of its own in
``/opt/fnserve``. Nothing is resolved or downloaded while the image builds (it runs with
``--network none``): the packages are exactly the ones the build installed and tested, which
keeps the image reproducible and buildable offline. The price: the base image's Python must have
the build's major.minor (compiled extensions are built for it); the Containerfile checks it first
and says what to do. ``ARG BASE`` defaults to ``python:<X.Y>-slim``; ``--build-arg BASE=...``
(or the ``CONTAINER_BASE_IMAGE`` environment variable for ``fnserve build --image``) names any
other image with that ``python3``, its ``venv`` module, ``sh`` and ``useradd``.

Layers go from the least to the most often changed (fnserve, envs, project), so a changed
function file rebuilds only the last one. Raises ``BuildError``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fnserve.build.exceptions import BuildError
from fnserve.build.staging import staged_folder
from fnserve.build.targets import Target
from fnserve.build.targets.kube import CONTAINER_PORT, HEALTH_PATH, RUN_AS, Workload, workload_of

if TYPE_CHECKING:
    from fnserve.build.manifest import Manifest

Say = Callable[[str], None]
FOLDER = "container"
CONTAINERFILE = "Containerfile"
APP_DIR = "/app/output"  # where the build output lives in the image
FNSERVE_VENV = "/opt/fnserve"
BASE_ENV = "CONTAINER_BASE_IMAGE"  # read by `fnserve build --image` only: the base to build FROM
ENGINES = ("podman", "docker")
APP_FILES = ("manifest.json", "report.json", "project", "static")
WHEEL_TAG = "py3-none-any"
# the zip entries' timestamp (1980-01-01, the earliest zip allows): the same fnserve packs to the same bytes
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
PLATFORMS = {"x86_64": "x86_64-manylinux_2_28", "amd64": "x86_64-manylinux_2_28",
             "aarch64": "aarch64-manylinux_2_28", "arm64": "aarch64-manylinux_2_28"}


def python_version_of(manifest: Manifest) -> str:
    """``"X.Y"``: the Python of the output's envs (all of them must agree), or of this interpreter
    when the output has none (built with install off). Raises ``BuildError`` when envs differ."""
    versions = {".".join(e.python_version.split(".")[:2]) for e in manifest.envs.values() if e.python_version}
    if len(versions) > 1:
        raise BuildError(f"target {FOLDER}", f"the output's envs use different Pythons ({', '.join(sorted(versions))})",
                         "one image has one Python: give every function the same Python (--python / "
                         ".python-version) and build again")
    return versions.pop() if versions else f"{sys.version_info.major}.{sys.version_info.minor}"


def containerfile(work: Workload, manifest: Manifest, python: str) -> str:
    """The ``Containerfile`` text for the build ``manifest`` (see the module docstring);
    ``python``: ``"X.Y"``; ``work``: the knobs shared with the kube targets (admin port)."""
    project = Path(manifest.source).name
    check = (f"import sys; v = '%d.%d' % sys.version_info[:2]; sys.exit(0 if v == '{python}' else "
             f"'fnserve: this image needs Python {python} as python3 (the build installed its packages for it), "
             f"the base image has ' + v + ': use --build-arg BASE=python:{python}-slim, or build the project "
             "with --python ' + v)")
    health = (f"import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s{HEALTH_PATH}' "
              f"% os.environ.get('PORT', '{CONTAINER_PORT}'), timeout=3)")
    start = (f'exec {FNSERVE_VENV}/bin/python -m fnserve start --from {APP_DIR} --host 0.0.0.0 '
             f'--port "${{PORT:-{CONTAINER_PORT}}}"')
    lines = [
        f"# Generated by `fnserve build --target container` from {project} (fnserve {manifest.fnserve}, "
        f"build {manifest.inputs[:16]}).",
        "# Build: podman build --format docker -t IMAGE OUTPUT/container   (docker build -t IMAGE OUTPUT/container)",
        f"# Run:   podman run -e PORT={CONTAINER_PORT} -p {CONTAINER_PORT}:{CONTAINER_PORT} IMAGE",
        f"# BASE: any image whose python3 is CPython {python} with its venv module, sh and useradd.",
        f"ARG BASE=python:{python}-slim",
        "FROM ${BASE}",
        f"LABEL org.opencontainers.image.title={json.dumps(project)} io.fnserve.version={json.dumps(manifest.fnserve)} "
        f"io.fnserve.build-inputs={json.dumps(manifest.inputs)}",
        f"ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PORT={CONTAINER_PORT}",
        "# fnserve and its dependencies (resolved at `fnserve build` time; nothing is downloaded here)",
        f"COPY fnserve/ {FNSERVE_VENV}/lib/python{python}/site-packages/",
        f'RUN python3 -c "{check}" \\',
        f"    && python3 -m venv --without-pip {FNSERVE_VENV}",
    ]
    if manifest.envs:
        lines.append("# the functions' envs: their packages, in venvs of this image's Python at the output's paths")
        lines.append(f"COPY envs/ {APP_DIR}/envs/")
        venvs = " && ".join(f"python3 -m venv --without-pip {APP_DIR}/{env.path}" for env in manifest.envs.values())
        lines.append(f"RUN {venvs}")
    lines += [
        "# the build output: manifest.json, project/, static/ (read-only for the service's user)",
        f"COPY app/ {APP_DIR}/",
        f"RUN (getent group {RUN_AS} >/dev/null || groupadd --gid {RUN_AS} fnserve) \\",
        f"    && (getent passwd {RUN_AS} >/dev/null || useradd --uid {RUN_AS} --gid {RUN_AS} --no-log-init "
        "--create-home --home-dir /home/fnserve --shell /usr/sbin/nologin fnserve)",
    ]
    if work.admin_port is not None:
        lines.append('# the project sets admin_port: keep /_fnserve/* on $PORT for the health check and probes')
        lines.append('ENV FNSERVE_ADMIN_PORT=""')
    lines += [
        "WORKDIR /app",
        f"USER {RUN_AS}:{RUN_AS}",
        f"EXPOSE {CONTAINER_PORT}",
        "STOPSIGNAL SIGTERM",
        "HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \\",
        f"    CMD {json.dumps([f'{FNSERVE_VENV}/bin/python', '-c', health])}",
        f"CMD {json.dumps(['/bin/sh', '-c', start])}",
    ]
    return "\n".join(lines) + "\n"


def pack_fnserve_wheel(dest: Path) -> Path:
    """Write ``dest/fnserve-<version>-py3-none-any.whl``: the running fnserve package (every file
    under ``fnserve/`` but ``__pycache__``) with the installed distribution's metadata, entry points
    included. Deterministic (sorted entries, fixed timestamps). Works for editable and regular
    installs alike; raises ``BuildError`` when fnserve has no installed metadata."""
    import fnserve

    try:
        dist = importlib.metadata.distribution("fnserve")
    except importlib.metadata.PackageNotFoundError as exc:
        raise BuildError(f"target {FOLDER}", "fnserve's installed metadata was not found (is it run from a "
                         "source tree without being installed?)", "install it: pip install -e <fnserve checkout>") from exc
    version = dist.version
    metadata = dist.read_text("METADATA") or f"Metadata-Version: 2.1\nName: fnserve\nVersion: {version}\n"
    info = f"fnserve-{version}.dist-info"
    package = Path(fnserve.__file__).resolve().parent
    entries: list[tuple[str, bytes]] = []
    for path in sorted(package.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix not in (".pyc", ".pyo"):
            entries.append(("fnserve/" + path.relative_to(package).as_posix(), path.read_bytes()))
    entries.append((f"{info}/METADATA", metadata.encode()))
    entries.append((f"{info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: fnserve\nRoot-Is-Purelib: true\n"
                    b"Tag: " + WHEEL_TAG.encode() + b"\n"))
    points = dist.read_text("entry_points.txt")
    if points:
        entries.append((f"{info}/entry_points.txt", points.encode()))
    record = "".join(f"{name},sha256={_digest(data)},{len(data)}\n" for name, data in entries) + f"{info}/RECORD,,\n"
    entries.append((f"{info}/RECORD", record.encode()))
    dest.mkdir(parents=True, exist_ok=True)
    wheel = dest / f"fnserve-{version}-{WHEEL_TAG}.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            item = zipfile.ZipInfo(name, ZIP_EPOCH)
            item.external_attr = 0o644 << 16
            item.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(item, data)
    return wheel


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def running_pins(exclude: Sequence[str] = ("fnserve",)) -> list[str]:
    """``name==version`` of every distribution installed beside the running fnserve (sorted): the
    constraints that make the image's fnserve dependencies the versions this installation runs."""
    pins = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").strip()
        key = name.lower().replace("_", "-").replace(".", "-")
        if name and key not in exclude and dist.version:
            pins[key] = f"{key}=={dist.version}"
    return [pins[k] for k in sorted(pins)]


def install_fnserve(wheel: Path, site: Path, python: str, say: Say, environ: Mapping[str, str] | None = None) -> None:
    """``uv pip install --target site`` of ``wheel`` and its dependencies for CPython ``python``
    ("X.Y") on manylinux (this machine's architecture), constrained to ``running_pins()``. Uses
    the package index (or uv's cache) now, so the image build needs no network. Raises
    ``BuildError`` naming the command when uv fails."""
    from fnserve.deps.uv import Uv, default_uv_binary

    machine = platform.machine().lower()
    target_platform = PLATFORMS.get(machine)
    if target_platform is None:
        raise BuildError(f"target {FOLDER}", f"no manylinux platform known for this machine ({machine})",
                         f"build on one of: {', '.join(sorted(PLATFORMS))}")
    pins = site.parent / "fnserve-constraints.txt"
    pins.write_text("".join(p + "\n" for p in running_pins()))
    args = ["pip", "install", "--target", str(site), "--python-version", python, "--python-platform", target_platform,
            "--constraint", str(pins), "--no-compile", "--quiet", str(wheel)]
    uv = Uv(default_uv_binary(), dict(os.environ if environ is None else environ))
    say(f"target {FOLDER}: installing fnserve and its dependencies for CPython {python} ({target_platform})")
    proc = uv.run(args)
    pins.unlink()
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-15:])
        raise BuildError(f"target {FOLDER}", f"`uv {' '.join(args)}` failed with exit status {proc.returncode}:\n{tail}",
                         "check that the package index is reachable and that fnserve's dependencies have "
                         f"wheels for CPython {python} on {target_platform}", exit_status=proc.returncode)


#: How the fnserve site-packages of the context is made (tests swap it for a stub: the real one
#: resolves from the package index).
InstallFnserve = Callable[[Path, Path, str, Say], None]


def write_context(output: Path, manifest: Manifest, work: Workload, say: Say,
                  install: InstallFnserve | None = None) -> Path:
    """Write ``output/container/`` (see the module docstring) into a temporary folder inside
    ``output``, then rename it into place (a previous folder is replaced only then; on any error
    nothing is left). Files of the output are hard-linked (copied across file systems).
    ``install``: makes fnserve's site-packages (default ``install_fnserve``, looked up at call
    time). Returns the folder."""
    output = Path(output)
    folder = output / FOLDER
    python = python_version_of(manifest)
    with staged_folder(folder) as tmp:
        wheel = pack_fnserve_wheel(tmp / "dist")
        (tmp / "fnserve").mkdir()
        (install or install_fnserve)(wheel, tmp / "fnserve", python, say)
        for env in manifest.envs.values():
            src = output / env.site_packages
            if not src.is_dir():
                raise BuildError(f"target {FOLDER}", f"{src}: the env {env.key} of the manifest is missing",
                                 "build the output again (fnserve build --force)")
            _copy(src, tmp / env.site_packages)
        for name in APP_FILES:
            if (output / name).exists():
                _copy(output / name, tmp / "app" / name)
        (tmp / CONTAINERFILE).write_text(containerfile(work, manifest, python))
    return folder


def _copy(src: Path, dst: Path) -> None:
    """``src`` (file or tree) to ``dst``: hard links, copies across file systems; no bytecode."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if src.is_dir() and not src.is_symlink():
        shutil.copytree(src, dst, symlinks=True, copy_function=_hardlink_or_copy,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    else:
        _hardlink_or_copy(src, dst)


def _hardlink_or_copy(src: str | Path, dst: str | Path) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def find_engine(which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The first of ``ENGINES`` on ``PATH`` (its path), or None."""
    return next((found for found in (which(name) for name in ENGINES) if found), None)


def image_command(engine: str, image: str, context: Path, base: str | None = None) -> list[str]:
    """The build command: ``podman build --format docker`` (the OCI format drops ``HEALTHCHECK``)
    or ``docker build``, with ``--network none`` (everything is in the context), ``--tag image``,
    ``--build-arg BASE=base`` when given."""
    command = [engine, "build"]
    if Path(engine).name == "podman":
        command += ["--format", "docker"]
    command += ["--network", "none", "--tag", image, "--file", str(context / CONTAINERFILE)]
    if base:
        command += ["--build-arg", f"BASE={base}"]
    return [*command, str(context)]


def build_image(command: Sequence[str], say: Say) -> None:
    """Run the image build ``command``, its output passed line by line to ``say``. Raises
    ``BuildError`` naming the command and its exit status when it fails."""
    shown = " ".join(command)
    say(f"target {FOLDER}: running `{shown}`")
    try:
        proc = subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, errors="replace")
    except OSError as exc:
        raise BuildError(f"target {FOLDER}", f"`{shown}` could not be started: {exc}",
                         "check the container engine's installation") from exc
    assert proc.stdout is not None
    for line in proc.stdout:
        say(f"  | {line.rstrip()}")
    status = proc.wait()
    if status != 0:
        raise BuildError(f"target {FOLDER}", f"`{shown}` failed with exit status {status}",
                         "read the engine's output above; the build context stays in place to retry by hand",
                         exit_status=status)


class ContainerTarget(Target):
    """``OUTPUT/container/``: ``Containerfile`` + build context; with ``--image NAME`` and podman or
    docker on ``PATH``, the image too (``CONTAINER_BASE_IMAGE``: the base to build from)."""

    name = "container"
    description = "a Containerfile + build context in OUTPUT/container/ (the image with --image NAME)"

    def render(self, output: Path, manifest: Manifest, say: Callable[[str], None]) -> list[Path]:
        """Write the context (``write_context``), then build the image when ``--image`` was given
        and an engine is found. Raises ``BuildError`` (context not written, or the engine failed)
        and ``ConfigError`` when the copied configuration does not load."""
        work = workload_of(output, manifest, self.options)
        try:
            folder = write_context(output, manifest, work, say)
        except OSError as exc:
            raise BuildError(f"target {self.name}", f"cannot write {Path(output) / FOLDER}: {exc}",
                             "check the output folder's permissions and free space") from exc
        say(f"target {self.name}: {folder / CONTAINERFILE} (image {work.image}, Python {python_version_of(manifest)})")
        if self.options.image is None:
            say(f"target {self.name}: build it with `podman build --format docker -t {work.image} {folder}` "
                "(or docker build), or pass --image NAME")
            return [folder]
        engine = find_engine()
        if engine is None:
            say(f"target {self.name}: neither podman nor docker is on PATH: the image was not built; build it "
                f"where one is with `podman build --format docker -t {work.image} {folder}`")
            return [folder]
        build_image(image_command(engine, work.image, folder, os.environ.get(BASE_ENV) or None), say)
        say(f"target {self.name}: image {work.image} built; run it with "
            f"`{Path(engine).name} run -e PORT={CONTAINER_PORT} -p {CONTAINER_PORT}:{CONTAINER_PORT} {work.image}`")
        return [folder]

    def is_current(self, output: Path, manifest: Manifest) -> bool:
        """``OUTPUT/container/Containerfile`` exists and was written after the build's manifest
        (an unchanged build renders a deleted context again; it does not rebuild the image)."""
        from fnserve.build.manifest import MANIFEST_NAME

        try:
            written = (Path(output) / FOLDER / CONTAINERFILE).stat().st_mtime_ns
            return written >= (Path(output) / MANIFEST_NAME).stat().st_mtime_ns
        except OSError:
            return False
