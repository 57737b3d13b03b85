"""``buildCommand`` / ``[tool.vercel.scripts] build`` and ``installCommand`` (SPEC §8, issue 11
item 2): run in the build's copy of the project, the env's bin/ first on PATH, output shown,
a failure stops the build naming the command and its exit status, nothing written."""

from __future__ import annotations

import json

from buildsupport import handler, run_cli, snapshot, write_project


def test_install_then_build_command_run_in_the_work_copy_with_the_env_first(tmp_path):
    project = write_project(tmp_path / "p", {
        "api/a.py": handler("'a'"),
        "vercel.json": json.dumps({
            "installCommand": "echo installed > marker.txt",
            "buildCommand": "cat marker.txt > built.txt && echo \"$VIRTUAL_ENV\" >> built.txt && "
                            "command -v python >> built.txt && mkdir -p public && echo gen > public/gen.html "
                            "&& echo visible-output",
        }),
    })
    before = snapshot(project)
    result = run_cli("build", str(project))  # a real (empty) env: install is on
    assert result.exit_code == 0, result.output
    assert "installCommand: running `echo installed > marker.txt`" in result.output
    assert "  | visible-output" in result.output
    out = project / ".fnserve" / "output"
    key = (project / ".fnserve" / "envs" / "current").read_text().strip()
    env_dir = project / ".fnserve" / "envs" / key
    installed, venv, python = (out / "project" / "built.txt").read_text().splitlines()
    assert installed == "installed"  # installCommand ran first, in the same copy
    assert venv == str(env_dir) and python == str(env_dir / "bin" / "python")
    assert (out / "static" / "gen.html").read_text() == "gen\n"  # generated public/ files are static
    assert snapshot(project) == before  # nothing of the user's tree was written
    assert not (project / "built.txt").exists() and not (project / "public").exists()


def test_pyproject_scripts_build_is_the_fallback(tmp_path):
    project = write_project(tmp_path / "p", {
        "api/a.py": handler("'a'"),
        "pyproject.toml": "[project]\nname = 'p'\nversion = '0'\n\n[tool.vercel.scripts]\nbuild = 'echo from-pyproject > b.txt'\n",
    })
    result = run_cli("build", str(project), "--no-install")
    assert result.exit_code == 0, result.output
    out = project / ".fnserve" / "output"
    assert (out / "project" / "b.txt").read_text() == "from-pyproject\n"
    assert json.loads((out / "manifest.json").read_text())["build_command"] == "echo from-pyproject > b.txt"


def test_failing_build_command_stops_the_build_and_leaves_nothing(tmp_path):
    project = write_project(tmp_path / "p", {
        "api/a.py": handler("'a'"),
        "vercel.json": json.dumps({"buildCommand": "echo about-to-fail; exit 3"}),
    })
    result = run_cli("build", str(project), "--no-install")
    assert result.exit_code == 2
    assert "  | about-to-fail" in result.output
    assert "buildCommand `echo about-to-fail; exit 3` failed with exit status 3" in result.output
    state = project / ".fnserve"
    assert not (state / "output").exists()
    assert not [p.name for p in state.iterdir() if p.name.startswith(".output")]


def test_failing_install_command_keeps_the_previous_output(tmp_path):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'")})
    assert run_cli("build", str(project), "--no-install").exit_code == 0
    out = project / ".fnserve" / "output"
    first = (out / "manifest.json").read_text()
    (project / "vercel.json").write_text(json.dumps({"installCommand": "false"}))
    result = run_cli("build", str(project), "--no-install")
    assert result.exit_code == 2 and "installCommand `false` failed with exit status 1" in result.output
    assert (out / "manifest.json").read_text() == first
