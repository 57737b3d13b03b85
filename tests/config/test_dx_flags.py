"""Issue 13 item 5: ``-p``, ``--env-file`` (repeatable), ``--reload-dir``/``--reload-exclude`` and
``--open`` as registry settings: flag, ``FNSERVE_*`` variable and ``[tool.fnserve]`` key alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from fnserve.cli import main
from fnserve.config import SETTINGS_BY_NAME, load_config
from fnserve.errors import ConfigError


def config_json(*args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    result = CliRunner().invoke(main, ["config", *args, "--json"], env=env or {}, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.stdout)
    return data


def setting_of(data: dict[str, object], name: str) -> dict[str, object]:
    settings = data["settings"]
    assert isinstance(settings, dict)
    found: dict[str, object] = settings[name]
    return found


@pytest.mark.parametrize("command", ["dev", "start", "config"])
def test_p_is_short_for_port(tmp_path: Path, command: str) -> None:
    text = CliRunner().invoke(main, [command, "--help"]).output
    assert "-p, --port" in text
    port = setting_of(config_json(str(tmp_path), "-p", "4123"), "port")
    assert (port["value"], port["source"]) == (4123, "--port")


def test_dev_help_lists_the_new_flags() -> None:
    text = CliRunner().invoke(main, ["dev", "--help"]).output
    for flag in ("--env-file", "--reload-dir", "--reload-exclude", "--open / --no-open"):
        assert flag in text
    start = CliRunner().invoke(main, ["start", "--help"]).output
    assert "--env-file" in start and "--reload-dir" not in start and "--open" not in start


def test_env_files_load_after_the_standard_ones_later_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("A=dotenv\nB=dotenv\nC=dotenv\n")
    (tmp_path / ".env.development.local").write_text("B=devlocal\n")
    (tmp_path / "one.env").write_text("B=one\nC=one\nREF=${A}-x\n")
    (tmp_path / "two.env").write_text("C=two\n")
    config = load_config(tmp_path, {"env_file": ("one.env", "two.env")}, environ={})
    assert dict(config.env_vars) == {"A": "dotenv", "B": "one", "C": "two", "REF": "dotenv-x"}
    assert config.files[-2:] == (tmp_path / "one.env", tmp_path / "two.env")
    assert config.sources["env_file"] == "--env-file"


def test_env_file_from_variable_and_pyproject(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("X=a\n")
    (tmp_path / "b.env").write_text("X=b\n")
    config = load_config(tmp_path, environ={"FNSERVE_ENV_FILE": "a.env:b.env"})
    assert config.env_file == ("a.env", "b.env") and config.env_vars["X"] == "b"
    (tmp_path / "pyproject.toml").write_text('[tool.fnserve]\nenv-file = ["b.env", "a.env"]\n')
    config = load_config(tmp_path, environ={})
    assert config.env_vars["X"] == "a" and config.sources["env_file"] == "pyproject.toml [tool.fnserve]"


def test_env_file_cli_is_repeatable(tmp_path: Path) -> None:
    (tmp_path / "a.env").write_text("X=a\n")
    (tmp_path / "b.env").write_text("X=b\n")
    data = config_json(str(tmp_path), "--env-file", "a.env", "--env-file", "b.env")
    assert setting_of(data, "env_file")["value"] == ["a.env", "b.env"]
    text = CliRunner().invoke(main, ["config", str(tmp_path), "--env-file", "a.env"], env={}).output
    assert "env-file" in text and "a.env" in text


def test_missing_env_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, {"env_file": ("nope.env",)}, environ={})
    assert info.value.source == "--env-file" and "nope.env: no such file" in str(info.value)
    result = CliRunner().invoke(main, ["dev", str(tmp_path), "--env-file", "nope.env"])
    assert result.exit_code == 2 and "--env-file: env_file: nope.env: no such file" in result.output


def test_reload_dir_must_be_a_project_folder(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    config = load_config(tmp_path, {"reload_dir": ("api",), "reload_exclude": ("*.log", "tests")}, environ={})
    assert config.reload_dir == ("api",) and config.reload_exclude == ("*.log", "tests")
    for bad in ("missing", ".."):
        with pytest.raises(ConfigError, match="not a folder inside the project"):
            load_config(tmp_path, {"reload_dir": (bad,)}, environ={})


def test_open_is_a_dev_bool_setting(tmp_path: Path) -> None:
    assert load_config(tmp_path, environ={}).open is False
    assert load_config(tmp_path, {"open": True}, environ={}).open is True
    assert load_config(tmp_path, environ={"FNSERVE_OPEN": "yes"}).open is True
    assert SETTINGS_BY_NAME["open"].commands == ("dev", "config")


def test_multiple_settings_reject_non_strings() -> None:
    with pytest.raises(ConfigError, match="env_file"):
        SETTINGS_BY_NAME["env_file"].parse([1, 2], "pyproject.toml [tool.fnserve]")
    assert SETTINGS_BY_NAME["env_file"].parse(" a.env : ", "FNSERVE_ENV_FILE") == ("a.env",)
