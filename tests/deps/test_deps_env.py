"""Environments: reuse without uv, real installs, failed installs, isolation, the CLI (SPEC §7).

Real installs use small packages (six, itsdangerous) and a fixed uv cache
(``~/.cache/fnserve-test-uv``) so reruns are warm. PyPI must be reachable.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from fnserve.cli import main
from fnserve.deps import DepsOptions, ensure_env, plan_deps
from fnserve.deps.envs import existing_env
from fnserve.errors import DependencyError

PROJECTS = Path(__file__).parents[1] / "projects"
UV_CACHE = Path.home() / ".cache" / "fnserve-test-uv"
OWN_MINOR = "%d.%d" % __import__("sys").version_info[:2]
ENVIRON = dict(os.environ)  # uv needs the machine's TLS / proxy settings to reach the index


def _options(**changes) -> DepsOptions:
    return DepsOptions(environ=ENVIRON, uv_cache_dir=UV_CACHE, **changes)


def _stub_uv(tmp_path: Path) -> tuple[str, Path]:
    """A uv that only records that it was called (and fails)."""
    log = tmp_path / "uv-calls.log"
    stub = tmp_path / "uv-stub"
    stub.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\nexit 3\n')
    stub.chmod(0o755)
    return str(stub), log


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if rel.parts[0] == ".fnserve" or not path.is_file():
            continue
        out[rel.as_posix()] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns)
    return out


def _run(python: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=30)


def test_empty_set_is_a_plain_venv_and_reused_without_uv(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "index.py").write_text("import json\nfrom http.server import BaseHTTPRequestHandler as handler\n")
    env = ensure_env(tmp_path, _options())
    assert env.changed and env.requirements == () and env.python.exists()
    isolated = _run(env.python, "import sys; print(sys.prefix)\ntry:\n import click\nexcept ImportError:\n print('isolated')")
    assert "isolated" in isolated.stdout and str(env.path) in isolated.stdout

    stub, log = _stub_uv(tmp_path)
    started = time.perf_counter()
    again = ensure_env(tmp_path, _options(uv_binary=stub))
    elapsed = time.perf_counter() - started
    assert not again.changed and again.key == env.key and again.python == env.python
    assert not log.exists(), f"uv was called for an unchanged set: {log.read_text()}"
    assert elapsed < 1.0


def test_real_install_reuse_add_and_failure_keep_previous_env(tmp_path):
    project = tmp_path / "proj"
    (project / "api").mkdir(parents=True)
    (project / "requirements.txt").write_text("six>=1.16\n")
    (project / "api" / "index.py").write_text(
        "import six\nimport itsdangerous\nfrom http.server import BaseHTTPRequestHandler as handler\n")
    before = _snapshot(project)
    progress: list[str] = []

    env = ensure_env(project, _options(), progress=progress.append)
    assert env.changed and set(env.requirements) == {"six>=1.16", "itsdangerous"}
    assert any("installing" in line for line in progress)
    check = _run(env.python, "import six, itsdangerous\ntry:\n import fnserve\nexcept ImportError:\n print('ok')")
    assert check.stdout.strip() == "ok", check.stderr
    lock = env.lock.read_text()
    assert "six==" in lock and "itsdangerous==" in lock
    assert (project / ".fnserve" / "requirements.lock").read_text() == lock

    # unchanged: no uv process at all
    stub, log = _stub_uv(tmp_path)
    assert not ensure_env(project, _options(uv_binary=stub)).changed
    assert not log.exists()

    # one more small requirement: a new env seeded from the previous one
    (project / "requirements.txt").write_text("six>=1.16\nmarkupsafe\n")
    started = time.perf_counter()
    added = ensure_env(project, _options(), progress=progress.append)
    elapsed = time.perf_counter() - started
    assert added.changed and added.key != env.key
    assert any("seeded" in line for line in progress)
    assert _run(added.python, "import markupsafe, six, itsdangerous").returncode == 0
    assert existing_env(project / ".fnserve" / "envs", env.key) is not None  # previous still there
    assert elapsed < 10  # goal ≤ 2 s with a warm cache (bench/deps.py); generous for shared CI

    # a requirement that does not exist: error names it and its line; previous env intact
    (project / "requirements.txt").write_text("six>=1.16\nfnserve-does-not-exist-xyz\n")
    with pytest.raises(DependencyError) as info:
        ensure_env(project, _options())
    text = str(info.value)
    assert "fnserve-does-not-exist-xyz" in text and "requirements.txt:2" in text
    envs = project / ".fnserve" / "envs"
    assert sorted(p.name for p in envs.iterdir() if p.is_dir()) == sorted([env.key, added.key])
    assert (envs / "current").read_text() == added.key
    assert _run(added.python, "import markupsafe").returncode == 0

    # nothing but .fnserve/ was written in the project (requirements.txt edits are the test's own)
    after = _snapshot(project)
    assert set(after) == set(before)
    assert after["api/index.py"] == before["api/index.py"]


def test_install_off_uses_fnserves_interpreter(tmp_path):
    import sys

    (tmp_path / "requirements.txt").write_text("six\n")
    messages: list[str] = []
    env = ensure_env(tmp_path, _options(install=False), progress=messages.append)
    assert env.python == Path(sys.executable) and env.key == "none" and not env.changed
    assert env.requirements == ("six",) and "install is off" in messages[0]
    assert not (tmp_path / ".fnserve" / "envs").exists()


def test_detect_imports_off(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "index.py").write_text("import yaml\n")
    assert plan_deps(tmp_path, _options(detect_imports=False)).merged.requirements == ()
    assert [r.name for r in plan_deps(tmp_path, _options()).merged.requirements] == ["pyyaml"]


def test_import_map_override_from_options(tmp_path):
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "index.py").write_text("import acme_sdk\n")
    plan = plan_deps(tmp_path, _options(import_map={"acme_sdk": "acme-python-sdk"}))
    assert [r.name for r in plan.merged.requirements] == ["acme-python-sdk"]


def _copy(name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copytree(PROJECTS / name, target)
    return target


def test_cli_check_fails_on_undeclared(tmp_path):
    project = _copy("deps_requirements", tmp_path)
    result = CliRunner().invoke(main, ["deps", str(project), "--check"])
    assert result.exit_code == 1, result.output
    assert "PyYAML" in result.output and "detected in api/index.py:3" in result.output
    assert "requirements.txt:6" in result.output  # Flask's source
    assert not (project / ".fnserve" / "envs").exists()  # --check installs nothing


def test_cli_json_and_check_ok(tmp_path):
    project = _copy("deps_edgeone", tmp_path)
    result = CliRunner().invoke(main, ["deps", str(project), "--json", "--no-install", "--python", OWN_MINOR])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["requirements"][0]["sources"] == ["cloud-functions/requirements.txt:1"]
    assert data["python"]["version"].startswith(OWN_MINOR + ".") and "python setting" in data["python"]["reason"]
    assert data["env"]["exists"] is False and data["problems"] == []


def test_cli_conflict_exits_2_naming_both_files(tmp_path):
    project = _copy("deps_conflict", tmp_path)
    result = CliRunner().invoke(main, ["deps", str(project), "--no-install"])
    assert result.exit_code == 2
    assert "requirements.txt:1" in result.output and "pyproject.toml:4" in result.output


def test_options_from_real_config(tmp_path):
    """``[tool.fnserve]`` detect-imports / import-map / python reach the plan through ``Config``."""
    load_config = pytest.importorskip("fnserve.config").load_config
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "index.py").write_text("import acme_sdk\nimport yaml\n")
    (tmp_path / "pyproject.toml").write_text(
        f'[tool.fnserve]\npython = "{OWN_MINOR}"\n\n[tool.fnserve.import-map]\nacme_sdk = "acme-python-sdk"\n')
    options = DepsOptions.from_config(load_config(tmp_path, {}, ENVIRON), ENVIRON)
    assert options.python == OWN_MINOR and options.import_map == {"acme_sdk": "acme-python-sdk"}
    plan = plan_deps(tmp_path, options)
    assert [r.name for r in plan.merged.requirements] == ["acme-python-sdk", "pyyaml"]
    assert plan.python.interpreter.version.startswith(OWN_MINOR + ".")
    (tmp_path / "pyproject.toml").write_text("[tool.fnserve]\ndetect-imports = false\n")
    off = DepsOptions.from_config(load_config(tmp_path, {}, ENVIRON), ENVIRON)
    assert off.detect_imports is False and plan_deps(tmp_path, off).merged.requirements == ()


def test_detected_name_missing_from_the_index_is_left_out_with_a_warning(tmp_path):
    (tmp_path / "requirements.txt").write_text("six\n")
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "index.py").write_text("import six\nimport fnserve_does_not_exist_xyz\n")
    messages: list[str] = []
    env = ensure_env(tmp_path, _options(), progress=messages.append)
    assert any("fnserve-does-not-exist-xyz" in m and "api/index.py:2" in m for m in messages)
    assert _run(env.python, "import six").returncode == 0
    result = CliRunner().invoke(main, ["deps", str(tmp_path), "--no-install"])
    assert "not on the index" in result.output


def test_edgeone_plan_excludes_cloud_functions_modules(tmp_path):
    project = _copy("deps_edgeone", tmp_path)
    plan = plan_deps(project, _options())
    assert [(r.line, r.sources) for r in plan.merged.requirements] == [
        ("flask==3.0.3", ("cloud-functions/requirements.txt:1",))]  # utils/, settings.py are local
    if plan.python.interpreter.version.startswith("3.12"):
        assert ".python-version:1" in plan.python.reason


@pytest.mark.parametrize(
    "stderr, expected",
    [
        ("  × No solution found when resolving dependencies:\n  ╰─▶ Because flask-nope was not found in the "
         "package registry and you require flask-nope, we can conclude that your requirements are "
         "unsatisfiable.", "flask-nope"),
        ("error: No solution found\n  cause: Because only six<=1.17.0 is available and you require six>=99, "
         "we can conclude that your requirements are unsatisfiable.", "six"),
        ("error: Failed to build `badpkg==1.0`\n  Caused by: Build backend failed", "badpkg"),
    ],
)
def test_uv_error_names_the_requirement(stderr, expected):
    from fnserve.deps.uv import failing_requirement

    assert failing_requirement(stderr, ["six", "badpkg", "flask-nope"]) == expected


def test_affects_dependencies(tmp_path):
    from fnserve.deps import affects_dependencies

    plan = plan_deps(_copy("deps_requirements", tmp_path), _options())
    root = plan.project_dir
    assert affects_dependencies(root, root / "requirements.txt")
    assert affects_dependencies(root, root / "reqs" / "base.txt", plan)  # an -r include
    assert affects_dependencies(root, root / "api" / "index.py")
    assert affects_dependencies(root, root / ".python-version")
    assert not affects_dependencies(root, root / "public" / "style.css")
    assert not affects_dependencies(root, root / ".venv" / "lib" / "x.py")
    assert not affects_dependencies(root, tmp_path / "elsewhere.py")


def test_async_variant_reports_progress(tmp_path):
    import asyncio

    from fnserve.deps import ensure_env_async

    messages: list[str] = []
    env = asyncio.run(ensure_env_async(tmp_path, _options(), progress=messages.append))
    assert env.changed and any("environment ready" in m for m in messages), messages
