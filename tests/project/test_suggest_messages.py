"""Issue 13 item 6: "did you mean" for unknown keys, and no empty JSON path in errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from fnserve.cli import main
from fnserve.config import load_config
from fnserve.errors import ConfigError
from fnserve.project.suggest import closest
from fnserve.project.vercel_json import parse_edgeone_json, parse_vercel_json


def test_closest_ignores_case_and_separators() -> None:
    assert closest("rewrite", ["rewrites", "redirects", "headers"]) == "rewrites"
    assert closest("max_duraton", ["max-duration", "memory"]) == "max-duration"
    assert closest("zzz", ["rewrites", "redirects"]) is None


def test_vercel_json_unknown_key_suggests_the_closest() -> None:
    with pytest.raises(ConfigError) as info:
        parse_vercel_json({"rewrite": []})
    err = info.value
    assert (err.source, err.key, err.problem) == ("vercel.json", "rewrite", "unknown key")
    assert str(err).startswith("vercel.json: rewrite: unknown key\n  hint: did you mean 'rewrites'? allowed: one of:")


def test_nested_unknown_key_suggests_too() -> None:
    with pytest.raises(ConfigError) as info:
        parse_vercel_json({"redirects": [{"source": "/a", "destination": "/b", "permanant": True}]})
    assert info.value.key == "redirects[0].permanant"
    assert "did you mean 'permanent'?" in str(info.value)


def test_edgeone_json_unknown_key_suggests() -> None:
    with pytest.raises(ConfigError) as info:
        parse_edgeone_json({"redirect": []})
    assert info.value.source == "edgeone.json" and "did you mean 'redirects'?" in str(info.value)


def test_no_suggestion_when_nothing_is_close() -> None:
    with pytest.raises(ConfigError) as info:
        parse_vercel_json({"qqqqqq": 1})
    assert "did you mean" not in str(info.value) and "allowed: one of:" in str(info.value)


@pytest.mark.parametrize("data", [[1, 2], "text", None, 3])
def test_top_level_errors_name_the_top_level(data: object) -> None:
    with pytest.raises(ConfigError) as info:
        parse_vercel_json(data)
    assert info.value.key == "(top level)"
    assert str(info.value).startswith("vercel.json: (top level): expected an object")
    assert ": : " not in str(info.value)


@pytest.mark.parametrize(("toml", "guess"), [
    ("[tool.fnserve]\nprot = 1\n", "port"),
    ("[tool.fnserve]\nmaxDuraton = 3\n", "max-duration"),
    ('[tool.fnserve.functions."api/*.py"]\nmemroy = 512\n', "memory"),
])
def test_tool_fnserve_unknown_key_suggests(tmp_path: Path, toml: str, guess: str) -> None:
    (tmp_path / "pyproject.toml").write_text(toml)
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path, environ={})
    assert info.value.problem == "unknown key"
    assert f"did you mean {guess!r}?" in str(info.value)


def test_cli_prints_the_suggestion(tmp_path: Path) -> None:
    (tmp_path / "vercel.json").write_text('{"rewrite": []}')
    result = CliRunner().invoke(main, ["config", str(tmp_path)])
    assert result.exit_code == 2
    assert "error: vercel.json: rewrite: unknown key" in result.output
    assert "did you mean 'rewrites'?" in result.output


def test_cli_top_level_message(tmp_path: Path) -> None:
    (tmp_path / "vercel.json").write_text("[]")
    result = CliRunner().invoke(main, ["config", str(tmp_path)])
    assert result.exit_code == 2
    assert "error: vercel.json: (top level): expected an object, found array []" in result.output


def test_empty_project_points_at_fnserve_init(tmp_path: Path) -> None:
    from fnserve.errors import NoEntrypointError
    from fnserve.project import load_project

    with pytest.raises(NoEntrypointError) as info:
        load_project(tmp_path)
    assert "nothing to serve" in str(info.value) and "`fnserve init`" in str(info.value)
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("hi")
    assert load_project(tmp_path).functions == ()  # static files only: a project to serve
