"""load_config: precedence, validation, the settings registry, .env files (SPEC §5)."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fnserve.config import SETTINGS, SETTINGS_BY_NAME, Config, cli_options, load_config, overrides_from
from fnserve.config.settings import parse_size
from fnserve.errors import ConfigError

PROJECTS = Path(__file__).parents[1] / "projects"
FULL = PROJECTS / "config_full"


def project(tmp_path: Path, pyproject: str = "", vercel: str | None = None, **files: str) -> Path:
    if pyproject:
        (tmp_path / "pyproject.toml").write_text(pyproject)
    if vercel is not None:
        (tmp_path / "vercel.json").write_text(vercel)
    for name, text in files.items():
        (tmp_path / name.replace("_", ".")).write_text(text)
    return tmp_path


# ------------------------------------------------------------------ defaults and registry


def test_defaults_in_an_empty_project(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert (config.host, config.port, config.log_format) == ("127.0.0.1", 3000, "text")
    assert config.body_limit == 4718592
    assert (config.max_duration, config.memory) == (300.0, 1024)
    assert (config.concurrency_sync, config.concurrency_asgi) == (32, 100)
    assert (config.min_instances, config.idle_timeout, config.queue_size) == (0, 60.0, 100)
    assert config.max_instances == max(1, os.cpu_count() or 1)
    assert config.admin_port is None and config.entrypoint is None and config.framework is None
    assert config.detect_imports is True and config.install is True and config.python is None
    assert config.reload is True
    assert set(config.sources.values()) == {"default"}
    assert config.function_env() == {} and config.files == () and config.warnings == ()


def test_reload_default_depends_on_mode(tmp_path: Path) -> None:
    assert load_config(tmp_path, environ={}, mode="start").reload is False
    assert load_config(tmp_path, environ={}, mode="dev").reload is True


def test_unknown_mode_and_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown mode"):
        load_config(tmp_path, environ={}, mode="prod")
    with pytest.raises(ConfigError, match="is not a folder"):
        load_config(tmp_path / "nope", environ={})


def test_every_setting_has_derived_names_and_a_config_attribute(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    names = [s.name for s in SETTINGS]
    assert len(names) == len(set(names))
    for s in SETTINGS:
        assert s.env == "FNSERVE_" + s.name.upper()
        assert s.flag == "--" + s.name.replace("_", "-")
        assert s.help and s.commands
        assert hasattr(config, s.name)
    required = {"host", "port", "entrypoint", "framework", "log_format", "body_limit", "max_duration", "memory",
                "concurrency_sync", "concurrency_asgi", "min_instances", "max_instances", "idle_timeout",
                "queue_size", "admin_port", "detect_imports", "install", "python", "reload"}
    assert required <= set(names)


def test_config_is_frozen_and_picklable(tmp_path: Path) -> None:
    config = load_config(FULL, environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]
    assert isinstance(config, Config)
    assert pickle.loads(pickle.dumps(config)) == config


# ------------------------------------------------------------------ precedence, one test per rule


def test_file_beats_default() -> None:
    config = load_config(FULL, environ={})
    assert config.port == 4000 and config.sources["port"] == "pyproject.toml [tool.fnserve]"
    assert config.log_format == "json" and config.body_limit == 10 * 1024 * 1024  # "10MB", kebab + snake keys
    assert config.sources["host"] == "default"


def test_env_beats_file() -> None:
    config = load_config(FULL, environ={"FNSERVE_PORT": "4500"})
    assert config.port == 4500 and config.sources["port"] == "FNSERVE_PORT"


def test_flag_beats_env_and_file() -> None:
    config = load_config(FULL, {"port": "4600"}, environ={"FNSERVE_PORT": "4500"})
    assert config.port == 4600 and config.sources["port"] == "--port"


def test_none_override_means_not_given() -> None:
    config = load_config(FULL, {"port": None}, environ={})
    assert config.sources["port"] == "pyproject.toml [tool.fnserve]"


def test_typed_overrides_are_accepted(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"port": 8080, "reload": False, "max_duration": 2}, environ={})
    assert (config.port, config.reload, config.max_duration) == (8080, False, 2.0)


def test_vercel_json_framework_is_below_file_and_env(tmp_path: Path) -> None:
    project(tmp_path, vercel='{"framework": "flask"}')
    config = load_config(tmp_path, environ={})
    assert config.framework == "flask" and config.sources["framework"] == "vercel.json"
    project(tmp_path, pyproject='[tool.fnserve]\nframework = "fastapi"\n')
    assert load_config(tmp_path, environ={}).framework == "fastapi"
    assert load_config(tmp_path, environ={"FNSERVE_FRAMEWORK": "django"}).framework == "django"


def test_tool_vercel_entrypoint_below_tool_fnserve(tmp_path: Path) -> None:
    project(tmp_path, pyproject='[tool.vercel]\nentrypoint = "backend.server:app"\n')
    config = load_config(tmp_path, environ={})
    assert config.entrypoint == "backend.server:app"
    assert config.sources["entrypoint"] == "pyproject.toml [tool.vercel]"
    project(tmp_path, pyproject='[tool.vercel]\nentrypoint = "backend.server:app"\n'
                                '[tool.fnserve]\nentrypoint = "main:application"\n')
    assert load_config(tmp_path, environ={}).entrypoint == "main:application"


def test_fnserve_toml_wins_over_pyproject_with_a_warning() -> None:
    config = load_config(PROJECTS / "config_fnserve_toml", environ={})
    assert config.port == 5000 and config.sources["port"] == "fnserve.toml"
    assert config.entrypoint == "server:app" and config.sources["entrypoint"] == "fnserve.toml"
    assert config.reload is False and config.idle_timeout == 5.0
    assert any("[tool.fnserve] ignored because fnserve.toml exists" in w for w in config.warnings)


def test_camel_case_file_keys(tmp_path: Path) -> None:
    project(tmp_path, pyproject="[tool.fnserve]\nmaxDuration = 9\nbodyLimit = 100\n")
    config = load_config(tmp_path, environ={})
    assert (config.max_duration, config.body_limit) == (9.0, 100)


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("var", "value", "allowed"),
    [
        ("FNSERVE_PORT", "abc", "an integer >= 0 and <= 65535"),
        ("FNSERVE_PORT", "70000", "<= 65535"),
        ("FNSERVE_LOG_FORMAT", "xml", "one of: text, json"),
        ("FNSERVE_RELOAD", "maybe", "true or false"),
        ("FNSERVE_MAX_DURATION", "-1", "a number >= 0.001 s"),
        ("FNSERVE_MEMORY", "1.5", "an integer >= 1 MB"),
        ("FNSERVE_BODY_LIMIT", "lots", "size such as 4.5MB"),
        ("FNSERVE_ENTRYPOINT", "app.py", "'module:attribute'"),
        ("FNSERVE_MIN_INSTANCES", "-2", ">= 0"),
    ],
)
def test_bad_env_value_names_the_variable_value_and_allowed(tmp_path: Path, var: str, value: str,
                                                            allowed: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={var: value})
    err = info.value
    assert err.source == var
    assert repr(value) in err.problem
    assert allowed in (err.allowed or "")


def test_bad_flag_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, {"port": "x"}, environ={})
    assert info.value.source == "--port"


def test_unknown_override_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown setting"):
        load_config(tmp_path, {"prot": 1}, environ={})


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[tool.fnserve]\nprot = 1\n", "prot"),
        ('[tool.fnserve]\nport = "x"\n', "port"),
        ("[tool.fnserve]\nreload = 1\n", "reload"),
        ("[tool.fnserve]\nmemory = true\n", "memory"),
        ('[tool.fnserve]\nfunctions = "x"\n', "functions"),
        ('[tool.fnserve.functions."api/*.py"]\nmaxx = 1\n', "maxx"),
        ('[tool.fnserve.functions."api/*.py"]\nport = 1\n', "port"),
        ('[tool.fnserve.functions."api/*.py"]\nmemory = 0\n', "memory"),
        ('[tool.fnserve.functions."api/*.py"]\ninclude-files = 1\n', "include-files"),
        ('[tool.fnserve.import-map]\nyaml = 1\n', "import-map.yaml"),
        ('[tool.fnserve]\nimport-map = "x"\n', "import-map"),
        ("[tool.fnserve\n", "(file)"),
    ],
)
def test_bad_file_values(tmp_path: Path, toml: str, key: str) -> None:
    project(tmp_path, pyproject=toml)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert info.value.key == key
    assert info.value.source.startswith("pyproject.toml")


def test_bad_vercel_json_surfaces_through_load_config(tmp_path: Path) -> None:
    project(tmp_path, vercel='{"redirects": [{"source": "/a", "destination": "/b", "permanent": "no"}]}')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert str(info.value).startswith("vercel.json: redirects[0].permanent:")


def test_min_instances_above_max_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="above max_instances"):
        load_config(tmp_path, environ={"FNSERVE_MIN_INSTANCES": "5", "FNSERVE_MAX_INSTANCES": "2"})


def test_unknown_fnserve_env_var_only_warns(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={"FNSERVE_PROT": "1"})
    assert any("FNSERVE_PROT" in w for w in config.warnings)


def test_nullable_from_env_and_bool_spellings(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={"FNSERVE_ADMIN_PORT": "", "FNSERVE_INSTALL": "off",
                                            "FNSERVE_DETECT_IMPORTS": "No", "FNSERVE_PYTHON": "3.12"})
    assert config.admin_port is None and config.install is False and config.detect_imports is False
    assert config.python == "3.12"
    assert load_config(tmp_path, environ={"FNSERVE_ADMIN_PORT": "9100"}).admin_port == 9100


@pytest.mark.parametrize(("text", "size"), [("4.5MB", 4718592), ("512k", 524288), ("1GiB", 2**30), ("10", 10),
                                            ("2m", 2 * 2**20), ("100b", 100)])
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


def test_import_map_is_carried() -> None:
    assert dict(load_config(FULL, environ={}).import_map) == {"yaml": "PyYAML"}


def test_build_command_from_vercel_json_or_tool_vercel_scripts(tmp_path: Path) -> None:
    assert load_config(FULL, environ={}).build_command == "python build.py"
    project(tmp_path, pyproject='[tool.vercel.scripts]\nbuild = "python build.py --fast"\n')
    assert load_config(tmp_path, environ={}).build_command == "python build.py --fast"
    project(tmp_path, vercel='{"buildCommand": "make"}')
    assert load_config(tmp_path, environ={}).build_command == "make"  # vercel.json takes precedence


def test_files_lists_what_a_reloader_should_watch() -> None:
    names = [p.name for p in load_config(FULL, environ={}).files]
    assert names == ["pyproject.toml", "vercel.json", ".env", ".env.local", ".env.development",
                     ".env.development.local"]


# ------------------------------------------------------------------ .env files


def test_env_file_order_in_dev() -> None:
    env = load_config(FULL, environ={}).function_env()
    assert env["OVERRIDDEN"] == "development-local"  # last file wins
    assert env["FROM_VERCEL_JSON"] == "vercel" and env["FROM_ENV"] == "env" and env["LOCAL_ONLY"] == "1"
    assert env["URL"] == "http://localhost/x"  # ${HOST_NAME:-localhost}


def test_env_file_order_in_start_uses_production_files() -> None:
    env = load_config(FULL, environ={}, mode="start").function_env()
    assert env["OVERRIDDEN"] == "production"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({}, "vercel"),
        ({".env": "X=env"}, "env"),
        ({".env": "X=env", ".env.local": "X=local"}, "local"),
        ({".env.local": "X=local", ".env.development": "X=dev"}, "dev"),
        ({".env.development": "X=dev", ".env.development.local": "X=devlocal"}, "devlocal"),
        ({".env.production": "X=prod"}, "vercel"),  # not read in dev
    ],
)
def test_each_env_file_overrides_the_previous(tmp_path: Path, files: dict[str, str], expected: str) -> None:
    project(tmp_path, vercel='{"env": {"X": "vercel"}}')
    for name, text in files.items():
        (tmp_path / name).write_text(text + "\n")
    assert load_config(tmp_path, environ={}).function_env()["X"] == expected


def test_env_interpolation_uses_given_environ_not_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FNSERVE_TEST_ONLY_IN_OS", "leak")
    (tmp_path / ".env").write_text("A=${FNSERVE_TEST_ONLY_IN_OS}\nB=${GIVEN}\nC=${A}x\nEMPTY\n")
    config = load_config(tmp_path, environ={"GIVEN": "given"})
    assert config.function_env() == {"A": "", "B": "given", "C": "x"}


def test_function_env_never_touches_os_environ() -> None:
    before = dict(os.environ)
    env = load_config(FULL, environ={}).function_env()
    env["MUTATED"] = "1"
    assert dict(os.environ) == before
    assert "MUTATED" not in load_config(FULL, environ={}).function_env()


# ------------------------------------------------------------------ cli_options


def test_cli_options_only_given_flags_become_overrides() -> None:
    seen: dict[str, object] = {}

    @click.command()
    @cli_options("host", "port", "reload")
    def cmd(**flags: object) -> None:
        seen.update(overrides_from(flags))

    runner = CliRunner()
    assert runner.invoke(cmd, []).exit_code == 0
    assert seen == {}
    assert runner.invoke(cmd, ["--port", "8000", "--no-reload"]).exit_code == 0
    assert seen == {"port": "8000", "reload": False}
    assert "FNSERVE_PORT" in runner.invoke(cmd, ["--help"]).output


def test_cli_options_without_names_adds_every_setting() -> None:
    @click.command()
    @cli_options()
    def cmd(**flags: object) -> None:
        pass

    help_text = CliRunner().invoke(cmd, ["--help"]).output
    for s in SETTINGS:
        assert s.flag in help_text


def test_setting_registry_lookup() -> None:
    assert SETTINGS_BY_NAME["port"].parse("8080", "--port") == 8080
    with pytest.raises(KeyError):
        cli_options("nope")


# ------------------------------------------------------------------ derived settings and warnings


def test_workers_per_function_sets_min_and_max(tmp_path: Path) -> None:
    config = load_config(tmp_path, {"workers_per_function": "3"}, environ={})
    assert (config.min_instances, config.max_instances) == (3, 3)
    assert config.sources["max_instances"] == "--workers-per-function (workers-per-function)"
    assert config.limits_for("api/x.py").min_instances == 3


def test_workers_per_function_yields_to_a_more_precedent_source(tmp_path: Path) -> None:
    project(tmp_path, pyproject="[tool.fnserve]\nworkers-per-function = 2\n")
    config = load_config(tmp_path, environ={"FNSERVE_MAX_INSTANCES": "8"})
    assert (config.min_instances, config.max_instances) == (2, 8)


def test_function_glob_matching_no_file_warns(tmp_path: Path) -> None:
    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "index.py").write_text("app = None\n")
    project(tmp_path, pyproject='[tool.fnserve.functions."api/nope.py"]\nmemory = 1\n',
            vercel='{"functions": {"api/**/*.py": {"memory": 2}, "src/*.py": {"memory": 3}}}')
    warnings = load_config(tmp_path, environ={}).warnings
    assert warnings == (
        'vercel.json: functions["src/*.py"]: matches no Python file; check the glob (e.g. \'api/**/*.py\')',
        'pyproject.toml [tool.fnserve] functions."api/nope.py": matches no Python file; check the glob '
        "(e.g. 'api/**/*.py')",
    )
