"""``fnserve build --target container``: the Containerfile (parsed instruction by instruction), the
build context, the atomic write, the fnserve wheel, and ``--image`` with a stand-in engine. The
image itself is built and run by ``make e2e-container`` (tests/e2e/container.py)."""

from __future__ import annotations

import json
import os
import shutil
import stat
import sys
import zipfile
from pathlib import Path

import pytest
from buildsupport import handler, run_cli, write_project

from fnserve.build.exceptions import BuildError
from fnserve.build.manifest import read_manifest
from fnserve.build.targets import TargetOptions
from fnserve.build.targets import container as container_target
from fnserve.build.targets.container import (
    BASE_ENV,
    image_command,
    pack_fnserve_wheel,
    python_version_of,
    running_pins,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PY = f"{sys.version_info.major}.{sys.version_info.minor}"


def fake_install(wheel: Path, site: Path, python: str, say) -> None:
    """Stands in for ``install_fnserve`` (which resolves from the package index): the wheel's
    package unpacked, no dependencies."""
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(site)
    say(f"fake install for {python}")


@pytest.fixture
def stub_install(monkeypatch):
    monkeypatch.setattr(container_target, "install_fnserve", fake_install)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per Containerfile instruction: comments dropped, ``\\``
    continuations joined."""
    found, pending = [], ""
    for line in text.splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        word, _, rest = whole.strip().partition(" ")
        found.append((word, " ".join(rest.split())))
    assert not pending, "a continuation runs off the end of the file"
    return found


def build_showcase(tmp_path: Path, *extra: str, env: dict[str, str] | None = None):
    project = tmp_path / "showcase"
    shutil.copytree(EXAMPLES / "showcase", project)
    out = tmp_path / "out"
    result = run_cli("build", str(project), "--no-install", "--target", "container", "--out", str(out), *extra,
                     env=env)
    return result, out


def test_containerfile_contract(tmp_path, stub_install):
    result, out = build_showcase(tmp_path)
    assert result.exit_code == 0, result.output
    text = (out / "container" / "Containerfile").read_text()
    steps = instructions(text)
    words = [w for w, _ in steps]
    # a base image as a build argument, declared before FROM, the build's Python as its default
    assert steps[0] == ("ARG", f"BASE=python:{PY}-slim") and steps[1] == ("FROM", "${BASE}")
    assert words.count("FROM") == 1
    args = dict(steps)
    env = dict(item.split("=", 1) for item in args["ENV"].split())
    assert env["PORT"] == "8080" and env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert args["USER"] == "1000:1000" and not args["USER"].startswith("0")  # non-root
    assert args["LABEL"].startswith('org.opencontainers.image.title="showcase" io.fnserve.version="0.1.0"')
    assert args["EXPOSE"] == "8080" and args["STOPSIGNAL"] == "SIGTERM" and args["WORKDIR"] == "/app"
    # HEALTHCHECK: options, then CMD in exec form probing /_fnserve/health on $PORT
    options, _, probe = args["HEALTHCHECK"].partition(" CMD ")
    assert "--interval=" in options and "--timeout=" in options
    probe_argv = json.loads(probe)
    assert probe_argv[0] == "/opt/fnserve/bin/python" and "/_fnserve/health" in probe_argv[2]
    assert "os.environ.get('PORT'" in probe_argv[2]
    # CMD: exec form, a shell only to expand $PORT, exec so fnserve is PID 1 and gets SIGTERM
    cmd = json.loads(args["CMD"])
    assert cmd[:2] == ["/bin/sh", "-c"]
    assert cmd[2] == ('exec /opt/fnserve/bin/python -m fnserve start --from /app/output --host 0.0.0.0 '
                      '--port "${PORT:-8080}"')
    assert words[-1] == "CMD" and words.index("USER") > words.index("COPY")
    # nothing is downloaded while the image builds: no pip, no uv, no apt
    runs = " ".join(a for w, a in steps if w == "RUN")
    commands = runs.replace("--without-pip", "").split()
    assert not {"pip", "pip3", "uv", "apt-get", "apt", "curl", "wget"} & set(commands) and "pip install" not in runs
    assert f"sys.exit(0 if v == '{PY}'" in runs and "python3 -m venv --without-pip /opt/fnserve" in runs
    assert "useradd --uid 1000 --gid 1000" in runs
    # every COPY source is in the context
    for word, arg in steps:
        if word == "COPY":
            source = arg.split()[0]
            assert (out / "container" / source).exists(), source
    # an output without envs creates none
    assert "COPY envs/" not in text
    assert "FNSERVE_ADMIN_PORT" not in text


def test_context_files(tmp_path, stub_install):
    no_engine = tmp_path / "no-engine"
    no_engine.mkdir()
    result, out = build_showcase(tmp_path, "--image", "ghcr.io/me/showcase:1", env={"PATH": str(no_engine)})
    assert result.exit_code == 0, result.output
    ctx = out / "container"
    assert sorted(p.name for p in ctx.iterdir()) == ["Containerfile", "app", "dist", "fnserve"]
    assert sorted(p.name for p in (ctx / "app").iterdir()) == ["manifest.json", "project", "report.json", "static"]
    # the output's files, hard-linked (same inode) rather than copied
    assert (ctx / "app" / "manifest.json").stat().st_ino == (out / "manifest.json").stat().st_ino
    assert (ctx / "app" / "project" / "api" / "hello.py").read_bytes() == (out / "project" / "api" / "hello.py").read_bytes()
    assert (ctx / "app" / "static" / "index.html").is_file()
    assert read_manifest(ctx / "app").functions == read_manifest(out).functions
    [wheel] = (ctx / "dist").iterdir()
    assert wheel.name == "fnserve-0.1.0-py3-none-any.whl"
    assert (ctx / "fnserve" / "fnserve" / "cli.py").is_file()  # what install put in the site
    assert not list(out.glob(".container.*"))  # no temporary folder left
    assert "image ghcr.io/me/showcase:1" in result.output  # --image names the image


def test_env_site_packages_go_into_the_context(tmp_path, stub_install):
    """A real env (itsdangerous, in uv's cache here): its site-packages only (the venv's
    bin/python links to this machine's interpreter), recreated in the image at the same path."""
    project = write_project(tmp_path / "signer", {
        "requirements.txt": "itsdangerous\n",
        "api/sign.py": handler("itsdangerous.__version__", "import itsdangerous\n"),
        "pyproject.toml": "[tool.fnserve]\nadmin_port = 9100\n",
    })
    out = tmp_path / "out"
    result = run_cli("build", str(project), "--target", "container", "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest = read_manifest(out)
    [env] = manifest.envs.values()
    ctx = out / "container"
    site = ctx / env.site_packages
    assert (site / "itsdangerous" / "signer.py").stat().st_ino == (out / env.site_packages / "itsdangerous" /
                                                                     "signer.py").stat().st_ino
    assert not (ctx / env.path / "bin").exists() and not (ctx / env.path / "pyvenv.cfg").exists()
    assert env.site_packages.startswith(f"{env.path}/lib/python{PY}/")  # the image's venv makes this path
    steps = instructions((ctx / "Containerfile").read_text())
    assert ("COPY", "envs/ /app/output/envs/") in steps
    assert ("RUN", f"python3 -m venv --without-pip /app/output/{env.path}") in steps
    # admin_port set: /_fnserve/* must stay on $PORT for the HEALTHCHECK
    assert ("ENV", 'FNSERVE_ADMIN_PORT=""') in steps
    assert python_version_of(manifest) == ".".join(env.python_version.split(".")[:2])


def test_envs_with_different_pythons_are_refused(tmp_path, stub_install):
    _result, out = build_showcase(tmp_path)
    manifest = read_manifest(out)
    from dataclasses import replace

    from fnserve.build.manifest import EnvRecord

    envs = {k: EnvRecord(k, f"envs/{k}", f"envs/{k}/bin/python", f"envs/{k}/lib/python{v}/site-packages", v + ".1",
                         "/usr/bin/python", (), 0) for k, v in (("a", "3.11"), ("b", "3.12"))}
    with pytest.raises(BuildError, match=r"different Pythons \(3.11, 3.12\)"):
        python_version_of(replace(manifest, envs=envs))


def test_context_is_written_atomically(tmp_path, monkeypatch, stub_install):
    result, out = build_showcase(tmp_path)
    assert result.exit_code == 0, result.output
    before = (out / "container" / "Containerfile").read_text()

    def failing(wheel, site, python, say):
        (site / "half-written").write_text("x")
        raise BuildError("target container", "install failed on purpose")

    monkeypatch.setattr(container_target, "install_fnserve", failing)
    manifest = read_manifest(out)
    work = container_target.workload_of(out, manifest, TargetOptions())
    with pytest.raises(BuildError, match="on purpose"):
        container_target.write_context(out, manifest, work, lambda _line: None)
    # the previous context is untouched, nothing half-written is left beside it
    assert (out / "container" / "Containerfile").read_text() == before
    assert not (out / "container" / "fnserve" / "half-written").exists()
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []
    # and without a previous context, a failure leaves no container/ at all
    shutil.rmtree(out / "container")
    with pytest.raises(BuildError):
        container_target.write_context(out, manifest, work, lambda _line: None)
    assert not (out / "container").exists() and not list(out.glob(".container*"))


def test_fnserve_wheel_is_the_running_package_and_reproducible(tmp_path):
    import fnserve

    first = pack_fnserve_wheel(tmp_path / "a")
    second = pack_fnserve_wheel(tmp_path / "b")
    assert first.read_bytes() == second.read_bytes()  # same fnserve → same bytes
    with zipfile.ZipFile(first) as archive:
        names = archive.namelist()
        info = "fnserve-0.1.0.dist-info"
        assert {f"{info}/METADATA", f"{info}/WHEEL", f"{info}/RECORD", f"{info}/entry_points.txt"} <= set(names)
        assert "fnserve = fnserve.cli:main" in archive.read(f"{info}/entry_points.txt").decode()
        assert "Requires-Dist: uvicorn" in archive.read(f"{info}/METADATA").decode()
        package = Path(fnserve.__file__).resolve().parent
        expected = {"fnserve/" + p.relative_to(package).as_posix() for p in package.rglob("*.py")
                    if "__pycache__" not in p.parts}
        assert expected <= set(names) and not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert archive.read("fnserve/cli.py") == (package / "cli.py").read_bytes()
        record = archive.read(f"{info}/RECORD").decode().splitlines()
        assert len(record) == len(names) and all(line.count(",") == 2 for line in record)
        assert archive.testzip() is None


def test_running_pins_pin_this_installation():
    from importlib.metadata import version

    pins = running_pins()
    assert f"click=={version('click')}" in pins and not [p for p in pins if p.startswith("fnserve==")]
    assert pins == sorted(pins, key=lambda pin: pin.split("==")[0])


def test_real_install_of_fnserve_for_the_image(tmp_path):
    """The real ``install_fnserve``: fnserve and its dependencies for this Python, pinned to the
    versions running here (uv's cache or the package index)."""
    import uvicorn

    wheel = pack_fnserve_wheel(tmp_path / "dist")
    site = tmp_path / "site"
    site.mkdir()
    lines: list[str] = []
    container_target.install_fnserve(wheel, site, PY, lines.append)
    assert (site / "fnserve" / "cli.py").is_file() and (site / "uvicorn").is_dir()
    assert (site / f"uvicorn-{uvicorn.__version__}.dist-info").is_dir()
    assert not list(tmp_path.rglob("fnserve-constraints.txt"))


def test_image_command():
    ctx = Path("/o/container")
    assert image_command("/usr/bin/podman", "site:1", ctx, "localhost/base:x") == [
        "/usr/bin/podman", "build", "--format", "docker", "--network", "none", "--tag", "site:1",
        "--file", "/o/container/Containerfile", "--build-arg", "BASE=localhost/base:x", "/o/container"]
    assert image_command("docker", "site:1", ctx) == [
        "docker", "build", "--network", "none", "--tag", "site:1", "--file", "/o/container/Containerfile",
        "/o/container"]


def _fake_engine(folder: Path, status: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "calls.txt"
    script = folder / "podman"
    script.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\necho 'STEP 1/15: FROM base'\nexit {status}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return log


def test_image_is_built_with_the_engine_found(tmp_path, stub_install):
    log = _fake_engine(tmp_path / "bin", 0)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}", BASE_ENV: "localhost/debian-python:3"}
    result, out = build_showcase(tmp_path, "--image", "fnserve-showcase:test", env=env)
    assert result.exit_code == 0, result.output
    args = log.read_text().split()
    assert args[:6] == ["build", "--format", "docker", "--network", "none", "--tag"]
    assert "fnserve-showcase:test" in args and "BASE=localhost/debian-python:3" in args
    assert args[-1] == str(out / "container")
    assert "  | STEP 1/15: FROM base" in result.output  # the engine's output is shown
    assert "image fnserve-showcase:test built" in result.output


def test_failing_image_build_exits_2_naming_the_command(tmp_path, stub_install):
    _fake_engine(tmp_path / "bin", 3)
    env = {"PATH": f"{tmp_path / 'bin'}:{os.environ['PATH']}"}
    result, out = build_showcase(tmp_path, "--image", "fnserve-showcase:test", env=env)
    assert result.exit_code == 2
    assert f"`{tmp_path / 'bin' / 'podman'} build --format docker" in result.output
    assert "failed with exit status 3" in result.output
    assert (out / "container" / "Containerfile").is_file()  # the context stays, to retry by hand


def test_no_engine_no_image(tmp_path, stub_install):
    empty = tmp_path / "nothing"
    empty.mkdir()
    result, out = build_showcase(tmp_path, "--image", "fnserve-showcase:test", env={"PATH": str(empty)})
    assert result.exit_code == 0, result.output
    assert "neither podman nor docker is on PATH" in result.output
    assert (out / "container" / "Containerfile").is_file()


def test_default_image_name_without_image(tmp_path, stub_install):
    result, _out = build_showcase(tmp_path)
    assert result.exit_code == 0, result.output
    assert "podman build --format docker -t fnserve-showcase:latest" in result.output


def test_unchanged_build_renders_a_deleted_context_again(tmp_path, stub_install):
    result, out = build_showcase(tmp_path)
    assert result.exit_code == 0, result.output
    project = tmp_path / "showcase"
    again = run_cli("build", str(project), "--no-install", "--target", "container", "--out", str(out))
    assert again.exit_code == 0 and "up to date" in again.output and "target container" not in again.output
    shutil.rmtree(out / "container")
    third = run_cli("build", str(project), "--no-install", "--target", "container", "--out", str(out))
    assert third.exit_code == 0 and "up to date" in third.output, third.output
    assert (out / "container" / "Containerfile").is_file()
