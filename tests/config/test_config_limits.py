"""Config.limits_for: per-function limits from vercel.json `functions` and
[tool.fnserve.functions."<glob>"] (SPEC §5, §9)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fnserve.config import load_config
from fnserve.config.effective import glob_matches

FULL = Path(__file__).parents[1] / "projects" / "config_full"


def make(tmp_path: Path, functions: dict | None = None, toml: str = "") -> Path:
    if functions is not None:
        (tmp_path / "vercel.json").write_text(json.dumps({"functions": functions}))
    if toml:
        (tmp_path / "pyproject.toml").write_text(toml)
    return tmp_path


def test_defaults_for_sync_and_asgi(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    sync, asgi = config.limits_for("api/x.py"), config.limits_for("api/x.py", asgi=True)
    assert (sync.max_duration, sync.memory, sync.concurrency) == (300.0, 1024, 32)
    assert asgi.concurrency == 100
    assert (sync.min_instances, sync.idle_timeout, sync.queue_size) == (0, 60.0, 100)
    assert sync.include_files is None and sync.exclude_files is None
    assert set(sync.sources.values()) == {"default"}


def test_vercel_json_glob_applies(tmp_path: Path) -> None:
    config = load_config(make(tmp_path, {"api/**/*.py": {"maxDuration": 10, "memory": 512}}), environ={})
    limits = config.limits_for("api/deep/er/x.py")
    assert (limits.max_duration, limits.memory) == (10.0, 512)
    assert limits.sources["max_duration"] == 'vercel.json: functions["api/**/*.py"]'
    assert config.limits_for("other/x.py").max_duration == 300.0


def test_most_specific_glob_wins_then_last(tmp_path: Path) -> None:
    config = load_config(make(tmp_path, {
        "api/hello.py": {"maxDuration": 1},
        "api/**/*.py": {"maxDuration": 2, "memory": 256},
        "api/*.py": {"maxDuration": 3},
        "api/*.p?": {"maxDuration": 4},
    }), environ={})
    hello = config.limits_for("api/hello.py")
    assert hello.max_duration == 1.0  # exact file beats every wildcard
    assert hello.memory == 256  # fields not set by the winner come from the next match
    assert config.limits_for("api/other.py").max_duration == 3.0  # more literal characters
    assert config.limits_for("api/x/y.py").max_duration == 2.0


def test_equal_specificity_last_written_wins(tmp_path: Path) -> None:
    config = load_config(make(tmp_path, {"api/*.py": {"memory": 1}, "api/?.py": {"memory": 2}}), environ={})
    # "api/*.py" and "api/?.py" have the same literal length: the later one wins
    assert config.limits_for("api/a.py").memory == 2


def test_tool_fnserve_function_glob_beats_vercel_json(tmp_path: Path) -> None:
    make(tmp_path, {"api/slow.py": {"maxDuration": 30, "memory": 2048}},
         '[tool.fnserve.functions."api/*.py"]\nmax-duration = 90\n')
    limits = load_config(tmp_path, environ={}).limits_for("api/slow.py")
    assert limits.max_duration == 90.0 and limits.memory == 2048
    assert limits.sources["max_duration"] == 'pyproject.toml [tool.fnserve] functions."api/*.py"'


def test_tool_fnserve_global_beats_vercel_json_glob(tmp_path: Path) -> None:
    make(tmp_path, {"api/*.py": {"maxDuration": 30}}, "[tool.fnserve]\nmax-duration = 45\n")
    assert load_config(tmp_path, environ={}).limits_for("api/a.py").max_duration == 45.0


def test_tool_fnserve_function_glob_beats_tool_fnserve_global(tmp_path: Path) -> None:
    make(tmp_path, None, '[tool.fnserve]\nmemory = 512\n[tool.fnserve.functions."api/big.py"]\nmemory = 4096\n')
    config = load_config(tmp_path, environ={})
    assert config.limits_for("api/big.py").memory == 4096
    assert config.limits_for("api/small.py").memory == 512


def test_env_and_flags_beat_every_file(tmp_path: Path) -> None:
    make(tmp_path, {"api/*.py": {"maxDuration": 30}}, '[tool.fnserve.functions."api/a.py"]\nmax-duration = 9\n')
    assert load_config(tmp_path, environ={"FNSERVE_MAX_DURATION": "5"}).limits_for("api/a.py").max_duration == 5.0
    limits = load_config(tmp_path, {"max_duration": "1"}, environ={}).limits_for("api/a.py")
    assert limits.max_duration == 1.0 and limits.sources["max_duration"] == "--max-duration"


def test_concurrency_key_sets_both_kinds_and_specific_keys_win(tmp_path: Path) -> None:
    make(tmp_path, None, '[tool.fnserve.functions."api/a.py"]\nconcurrency = 4\n'
                         '[tool.fnserve.functions."api/b.py"]\nconcurrency = 4\nconcurrency-asgi = 50\n')
    config = load_config(tmp_path, environ={})
    assert config.limits_for("api/a.py").concurrency == 4
    assert config.limits_for("api/a.py", asgi=True).concurrency == 4
    assert config.limits_for("api/b.py", asgi=True).concurrency == 50
    assert config.limits_for("api/b.py").sources["concurrency"].endswith('functions."api/b.py"')


def test_full_fixture_include_exclude_and_instances() -> None:
    config = load_config(FULL, environ={})
    slow = config.limits_for("api/slow.py")
    assert slow.max_duration == 200.0  # [tool.fnserve.functions."api/slow.py"]
    assert slow.memory == 1024 and slow.concurrency == 2
    assert slow.include_files == "data/**" and slow.exclude_files == "{tests/**,docs/**}"
    hello = config.limits_for("api/hello.py")
    assert hello.max_duration == 60.0  # [tool.fnserve] max-duration beats vercel.json's 30
    fnserve_toml = load_config(FULL.parent / "config_fnserve_toml", environ={}).limits_for("server.py")
    assert (fnserve_toml.min_instances, fnserve_toml.max_instances, fnserve_toml.idle_timeout) == (1, 3, 5.0)


def test_limits_are_frozen_and_comparable(tmp_path: Path) -> None:
    config = load_config(tmp_path, environ={})
    assert config.limits_for("api/a.py") == config.limits_for("api/b.py")
    with pytest.raises(AttributeError):
        config.limits_for("api/a.py").memory = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("api/**/*.py", "api/hello.py", True),
        ("api/**/*.py", "api/a/b/c.py", True),
        ("api/**/*.py", "apix/hello.py", False),
        ("api/*.py", "api/a/b.py", False),
        ("api/users/[id].py", "api/users/[id].py", True),  # brackets are literal
        ("api/users/[id].py", "api/users/i.py", False),
        ("api/{a,b}.py", "api/b.py", True),
        ("api/{a,b}.py", "api/c.py", False),
        ("/api/x.py", "api/x.py", True),
        ("./api/x.py", "api/x.py", True),
        ("**", "cloud-functions/api/x.py", True),
        ("cloud-functions/**/*.py", "cloud-functions/index.py", True),
    ],
)
def test_glob_matching(glob: str, path: str, matches: bool) -> None:
    assert glob_matches(glob, path) is matches
