"""``fnserve start --from OUTPUT`` serves a build with the project folder gone (issue 11 acceptance):
same responses as ``fnserve start DIR`` gave before, over a real loopback server on port 0."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from buildsupport import handler, responses, run_cli, serving, write_project

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SHOWCASE = [("GET", "/"), ("GET", "/style.css"), ("GET", "/api/hello"), ("POST", "/api/hello"), ("GET", "/hello"),
            ("GET", "/old-hello"), ("GET", "/api/hello.py"), ("GET", "/api/users/7"), ("GET", "/api/flask_app"),
            ("GET", "/api/fastapi_app/items"), ("GET", "/api/fastapi_app/items/2"), ("GET", "/api/asgi_raw/x/y"),
            ("GET", "/api/files/a/b/c"), ("GET", "/api/nope"), ("GET", "/nope.css")]
EDGEONE = [("GET", "/api/hello"), ("GET", "/api/users/3"), ("DELETE", "/api/users/3"), ("GET", "/api/flaskapp"),
           ("GET", "/api/flaskapp/users"), ("GET", "/api/anything/else"), ("GET", "/api"), ("GET", "/nope")]


@pytest.mark.parametrize(("example", "paths"), [("showcase", SHOWCASE), ("edgeone", EDGEONE)])
def test_example_served_from_output_like_from_the_folder(tmp_path, example, paths):
    project = tmp_path / example
    shutil.copytree(EXAMPLES / example, project)
    # --no-install: fnserve's own interpreter has flask and fastapi (a real env is tested below)
    with serving(str(project), "--no-install") as url:
        expected = responses(url, paths)
    out = tmp_path / "out"
    result = run_cli("build", str(project), "--no-install", "--out", str(out))
    assert result.exit_code == 0, result.output
    shutil.rmtree(project)
    with serving("--from", str(out), "--no-install") as url:
        got = responses(url, paths)
    assert got == expected
    assert any(status == 200 for _m, _p, status, _t, _b in got)


def test_real_env_with_a_third_party_package(tmp_path):
    """A project needing itsdangerous (in uv's cache here): the build installs it into the
    project's env, the output carries it, and start --from uses the OUTPUT's copy."""
    project = write_project(tmp_path / "signer", {
        "requirements.txt": "itsdangerous\n",
        "api/sign.py": handler(
            "json.dumps({'signed': itsdangerous.Signer('k').sign(b'v').decode(), 'module': itsdangerous.__file__,"
            " 'prefix': sys.prefix})", "import json, sys\nimport itsdangerous\n"),
    })
    out = tmp_path / "out"
    result = run_cli("build", str(project), "--out", str(out))
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    (key, env), = manifest["envs"].items()
    assert manifest["functions"][0]["env"] == key and any(r.startswith("itsdangerous") for r in env["requirements"])
    site = out / env["site_packages"]
    assert (site / "itsdangerous").is_dir() and not list(site.rglob("*.pyc"))
    source = next((project / ".fnserve" / "envs" / key).glob("lib/python*/site-packages/itsdangerous/signer.py"))
    assert (site / "itsdangerous" / "signer.py").stat().st_ino == source.stat().st_ino  # hard-linked, not copied
    shutil.rmtree(project)
    with serving("--from", str(out)) as url:
        [(_m, _p, status, _t, body)] = responses(url, [("GET", "/api/sign")])
    assert status == 200, body
    data = json.loads(body)
    assert data["signed"].startswith("v.")
    assert data["module"].startswith(str(out / "envs" / key)) and data["prefix"] == str(out / "envs" / key)


def test_start_from_refuses_an_unknown_format(tmp_path):
    out = tmp_path / "out"
    (out / "project").mkdir(parents=True)
    (out / "manifest.json").write_text(json.dumps({"format": 99, "fnserve": "99.0"}))
    proc = subprocess.run([sys.executable, "-m", "fnserve", "start", "--from", str(out), "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "format 99" in proc.stderr and "fnserve build" in proc.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "fnserve", "start", "--from", str(empty), "--port", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "no manifest.json" in proc.stderr


def test_from_and_a_directory_together_are_a_usage_error(tmp_path):
    result = run_cli("start", str(tmp_path), "--from", str(tmp_path))
    assert result.exit_code == 2 and "either DIRECTORY or --from OUTPUT" in result.output
