"""The typed ``Config`` and the registry read off its fields (issue 12 item 1)."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

import pytest

from fnserve.config import MODES, SETTINGS, SETTINGS_BY_NAME, Config, load_config
from fnserve.config.settings import setting, settings_of

PROJECTS = Path(__file__).parents[1] / "projects"
FULL = PROJECTS / "config_full"


def test_config_fields_have_real_types() -> None:
    hints = typing.get_type_hints(Config)
    assert hints["port"] is int and hints["max_duration"] is float and hints["reload"] is bool
    assert hints["entrypoint"] == str | None and hints["admin_port"] == int | None
    assert hints["project_dir"] is Path


def test_registry_is_read_off_the_fields() -> None:
    setting_fields = [f.name for f in dataclasses.fields(Config) if f.name in SETTINGS_BY_NAME]
    assert [s.name for s in SETTINGS] == setting_fields
    port, entrypoint = SETTINGS_BY_NAME["port"], SETTINGS_BY_NAME["entrypoint"]
    assert (port.type, port.nullable, port.default, port.maximum) == (int, False, 3000, 65535)
    assert (entrypoint.type, entrypoint.nullable) == (str, True)
    assert SETTINGS_BY_NAME["log_format"].choices == ("text", "json")


def test_every_default_is_a_valid_value_of_its_setting() -> None:
    for s in SETTINGS:
        for mode in MODES:
            default = s.default_for(mode)
            assert s.parse(default, "default") == default, s.name


def test_mode_dependent_default() -> None:
    reload = SETTINGS_BY_NAME["reload"]
    assert (reload.default_for("dev"), reload.default_for("start")) == (True, False)
    assert reload.show_default() == "on in dev" and SETTINGS_BY_NAME["max_instances"].show_default() == "CPU count"


def test_settings_of_rejects_a_type_it_cannot_parse() -> None:
    @dataclasses.dataclass(frozen=True)
    class Bad:
        names: tuple[str, ...] = setting(("a",), "Names.", commands=("dev",))

    with pytest.raises(TypeError, match="names"):
        settings_of(Bad)


def test_setting_rejects_an_unknown_command() -> None:
    with pytest.raises(ValueError, match="serve"):
        setting(1, "One.", commands=("serve",))


def test_files_false_reads_flags_env_and_defaults_only(tmp_path: Path) -> None:
    (tmp_path / "vercel.json").write_text('{"cleanUrls": "yes"}')  # invalid: ignored with files=False
    (tmp_path / "pyproject.toml").write_text("[tool.fnserve]\nport = 4000\n")
    (tmp_path / ".env").write_text("A=1\n")
    config = load_config(tmp_path, {"host": "0.0.0.0"}, {"FNSERVE_MEMORY": "256"}, files=False)
    assert (config.host, config.port, config.memory) == ("0.0.0.0", 3000, 256)
    assert (config.sources["host"], config.sources["port"], config.sources["memory"]) == (
        "--host", "default", "FNSERVE_MEMORY")
    assert config.files == () and config.function_env() == {} and config.vercel.rewrites == ()
    full = load_config(FULL, environ={}, files=False)
    assert full.port == 3000 and full.function_rules == () and full.import_map == {}
