"""Flags and ``FNSERVE_*`` are validated once, before anything starts (issue 12 item 1): ``dev``
exits 2 naming the setting and its source, as ``start`` does; a broken project FILE stops
``start`` (exit 2) but not ``dev``, which keeps a valid typed ``Config`` from flags + environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from fnserve.config import Config
from fnserve.errors import ConfigError
from fnserve.server.dev import DevServer

PROJECTS = Path(__file__).parents[1] / "projects"
BAD_CONFIG = PROJECTS / "dev_badconfig"  # vercel.json: "cleanUrls": "yes"
GOOD = PROJECTS / "start_basic"

BAD_INPUTS = [
    pytest.param([], {"FNSERVE_PORT": "99999"}, "error: FNSERVE_PORT: port: bad value '99999'",
                 "allowed: an integer >= 0 and <= 65535", id="env-port"),
    pytest.param(["--port", "70000"], {}, "error: --port: port: bad value '70000'",
                 "allowed: an integer >= 0 and <= 65535", id="flag-port"),
    pytest.param(["--port", "0", "--max-duration", "abc"], {}, "error: --max-duration: max_duration: bad value 'abc'",
                 "allowed: a number >= 0.001 s", id="flag-max-duration"),
]


def fnserve(command: str, project: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m fnserve <command> <project> <args>``; a server that starts instead of exiting
    is killed by the timeout (and the test fails)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FNSERVE_")}
    return subprocess.run([sys.executable, "-m", "fnserve", command, str(project), "--no-install", *args],
                          capture_output=True, text=True, env={**clean, **env}, timeout=30)


@pytest.mark.parametrize(("args", "env", "message", "allowed"), BAD_INPUTS)
@pytest.mark.parametrize("command", ["dev", "start"])
def test_bad_flag_or_env_exits_2_naming_setting_and_source(
    command: str, args: list[str], env: dict[str, str], message: str, allowed: str
) -> None:
    result = fnserve(command, GOOD, args, env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and allowed in result.stderr
    assert "Traceback" not in result.stderr and "http://" not in result.stdout


def test_start_with_invalid_vercel_json_exits_2(tmp_path: Path) -> None:
    result = fnserve("start", BAD_CONFIG, ["--port", "0"], {})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "error: vercel.json" in result.stderr and "cleanUrls" in result.stderr
    assert "http://" not in result.stdout


def test_dev_server_validates_flags_and_env_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as flag:
        DevServer(tmp_path, {"port": "70000"}, environ={})
    assert (flag.value.source, flag.value.key) == ("--port", "port")
    with pytest.raises(ConfigError) as env:
        DevServer(tmp_path, {}, environ={"FNSERVE_MAX_DURATION": "abc"})
    assert (env.value.source, env.value.key) == ("FNSERVE_MAX_DURATION", "max_duration")


def test_dev_server_with_a_broken_file_holds_a_config_from_flags_and_env() -> None:
    dev = DevServer(BAD_CONFIG, {"port": "0"}, environ={"FNSERVE_MAX_DURATION": "12"})
    assert isinstance(dev.config, Config)
    assert (dev.config.port, dev.config.sources["port"]) == (0, "--port")
    assert (dev.config.max_duration, dev.config.sources["max_duration"]) == (12.0, "FNSERVE_MAX_DURATION")
    assert dev.config.files == () and dev.config.vercel.rewrites == ()
    assert dev.config_problem is not None and "vercel.json" in dev.config_problem.message
    assert "cleanUrls" in (dev.config_problem.detail or "")
    assert dev.site().problem == dev.config_problem  # every function request answers 500 naming it


def test_dev_server_reload_keeps_the_last_valid_config(tmp_path: Path) -> None:
    (tmp_path / "vercel.json").write_text('{"cleanUrls": true}')
    said: list[str] = []
    dev = DevServer(tmp_path, {"port": "0"}, environ={}, say=said.append)
    assert dev.config_problem is None and dev.config.vercel.clean_urls is True
    good = dev.config
    (tmp_path / "vercel.json").write_text('{"cleanUrls": "yes"}')
    dev.load_config()
    assert dev.config is good and dev.config_problem is not None
    assert said and said[-1].startswith("error: vercel.json")
    (tmp_path / "vercel.json").write_text('{"cleanUrls": false}')
    dev.load_config()
    assert dev.config_problem is None and dev.config.vercel.clean_urls is False
