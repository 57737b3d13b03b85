"""Every command's setting flags come from the registry (issue 12 item 1): ``--help`` lists
exactly the settings whose ``commands`` include the command; the flags work (CliRunner)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fnserve.cli import main
from fnserve.config import SETTINGS

PROJECTS = Path(__file__).parents[1] / "projects"
OWN_MINOR = "%d.%d" % sys.version_info[:2]


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(main, [*args], env=env or {}, catch_exceptions=False)


@pytest.mark.parametrize("command", ["dev", "start", "routes", "config", "deps", "build"])
def test_help_lists_exactly_the_commands_settings(command: str) -> None:
    text = invoke(command, "--help").output
    for s in SETTINGS:
        shown = s.flag + " " in text or s.flag + "\n" in text
        assert shown == (command in s.commands), (command, s.flag)


def test_dev_help_has_no_production_scaling_flags() -> None:
    text = invoke("dev", "--help").output
    for flag in ("--max-instances", "--min-instances", "--queue-size", "--grace-period", "--admin-port",
                 "--workers-per-function", "--concurrency-sync", "--idle-timeout"):
        assert flag not in text
    for flag in ("--body-limit", "--max-duration", "--memory", "--reload / --no-reload"):
        assert flag in text
    assert "--log-format [text|json]" in text


def test_start_help_has_scaling_flags_and_no_reload() -> None:
    text = invoke("start", "--help").output
    assert "--max-instances" in text and "--grace-period" in text and "--admin-port" in text
    assert "--reload" not in text and "--log-format [text|json]" in text


def test_routes_entrypoint_flag() -> None:
    result = invoke("routes", str(PROJECTS / "zc_nothing"), "--entrypoint", "app:create_app")
    assert result.exit_code == 0, result.output
    assert "app.py" in result.stdout and "mount" in result.stdout
    bad = invoke("routes", str(PROJECTS / "zc_nothing"), "--entrypoint", "app")
    assert bad.exit_code == 2
    assert "error: --entrypoint: entrypoint: bad value 'app'" in bad.stderr and "module:attribute" in bad.stderr


def test_routes_entrypoint_from_env_names_its_source() -> None:
    bad = invoke("routes", str(PROJECTS / "zc_nothing"), env={"FNSERVE_ENTRYPOINT": "no colon"})
    assert bad.exit_code == 2 and "error: FNSERVE_ENTRYPOINT: entrypoint: bad value" in bad.stderr


def test_deps_detect_imports_flag(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "index.py").write_text("import yaml\n")
    args = ("deps", str(tmp_path), "--json", "--no-install", "--python", OWN_MINOR)
    detected = json.loads(invoke(*args).output)
    assert [r["name"] for r in detected["requirements"]] == ["pyyaml"]
    result = invoke(*args, "--no-detect-imports")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["requirements"] == []
    assert json.loads(result.output)["env"]["exists"] is False  # --no-install: plan only


def test_deps_bad_flag_exits_2_naming_it(tmp_path: Path) -> None:
    result = invoke("deps", str(tmp_path), "--no-install", env={"FNSERVE_DETECT_IMPORTS": "maybe"})
    assert result.exit_code == 2
    assert "error: FNSERVE_DETECT_IMPORTS: detect_imports: bad value 'maybe'" in result.stderr
