"""`fnserve config [DIR]` through click's CliRunner (SPEC §5)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fnserve.cli import main

PROJECTS = Path(__file__).parents[1] / "projects"
FULL = str(PROJECTS / "config_full")


def run(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(main, ["config", *args], env=env or {}, catch_exceptions=False)


def row(output: str, name: str) -> list[str]:
    for line in output.splitlines():
        parts = line.split()
        if parts and parts[0] == name:
            return parts
    raise AssertionError(f"no row {name!r} in:\n{output}")


def test_text_table_shows_value_and_source() -> None:
    result = run(FULL)
    assert result.exit_code == 0, result.output
    out = result.output
    assert row(out, "port")[1:3] == ["4000", "pyproject.toml"]
    assert row(out, "host")[1:3] == ["127.0.0.1", "default"]
    assert row(out, "body-limit")[1:4] == ["10485760", "bytes", "pyproject.toml"]
    # the table is aligned: every settings row puts its SOURCE in the same column
    lines = [line for line in out.splitlines() if line.startswith("  ") and "FNSERVE_" in line]
    columns = {line.index("FNSERVE_") for line in lines}
    assert len(lines) >= 19 and len(columns) == 1


def test_flag_and_env_sources_are_shown() -> None:
    out = run(FULL, "--port", "9999", env={"FNSERVE_MEMORY": "256"}).output
    assert row(out, "port")[1:3] == ["9999", "--port"]
    assert row(out, "memory")[1:4] == ["256", "MB", "FNSERVE_MEMORY"]


def test_routing_summary_and_function_rules() -> None:
    out = run(FULL).output
    assert "redirect  /old-blog/:path*  /blog/:path* (308)" in out
    assert "rewrite   /blog/:slug" in out and "/api/posts?slug=:slug" in out
    assert "headers   /api/(.*)" in out and "Cache-Control" in out
    assert "cleanUrls: true; trailingSlash: false" in out
    assert "api/slow.py" in out and "max-duration=200" in out


def test_env_names_shown_values_never() -> None:
    result = run(FULL)
    assert "SECRET_TOKEN" in result.output
    assert "do-not-print-me" not in result.output
    as_json = run(FULL, "--json")
    assert "do-not-print-me" not in as_json.output
    assert "SECRET_TOKEN" in json.loads(as_json.output)["function_env"]


def test_json_output() -> None:
    result = run(FULL, "--json", "--mode", "start")
    assert result.exit_code == 0
    data = json.loads(result.output)
    assert data["mode"] == "start"
    assert data["settings"]["port"] == {"value": 4000, "source": "pyproject.toml [tool.fnserve]",
                                        "env": "FNSERVE_PORT", "flag": "--port", "unit": None}
    assert data["settings"]["reload"]["value"] is False
    assert [r["type"] for r in data["routing"]["rules"]] == ["redirect"] * 3 + ["rewrite"] * 2 + ["headers"]
    assert data["build_command"] == "python build.py"
    assert ".env.production" in data["files"]


def test_legacy_routes_are_summarised() -> None:
    out = run(str(PROJECTS / "config_legacy_routes")).output
    assert "(handle: filesystem)" in out
    assert "/api/index.py?name=$name" in out
    assert "version: accepted but not used by fnserve" in out


def test_bad_env_value_exits_2_with_the_message() -> None:
    result = CliRunner().invoke(main, ["config", FULL], env={"FNSERVE_PORT": "abc"})
    assert result.exit_code == 2
    assert "FNSERVE_PORT: port: bad value 'abc'" in result.output
    assert "allowed: an integer" in result.output


def test_bad_vercel_json_exits_2() -> None:
    result = CliRunner().invoke(main, ["config", str(PROJECTS / "config_bad_json")], env={})
    assert result.exit_code == 2
    assert "vercel.json: line 4:3: invalid JSON" in result.output


def test_bad_flag_exits_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["config", str(tmp_path), "--log-format", "xml"], env={})
    assert result.exit_code == 2
    assert "--log-format: log_format: bad value 'xml'" in result.output


def test_empty_project(tmp_path: Path) -> None:
    result = run(str(tmp_path))
    assert result.exit_code == 0
    assert "files: (none: defaults only)" in result.output
    assert "Routing rules: none" in result.output
    assert "Function environment (0 variables; values hidden)" in result.output


def test_effective_limits_per_function() -> None:
    out = run(FULL).output
    section = out.split("Effective limits per function")[1]
    assert row(section, "api/slow.py")[1:] == ["200", "s", "1024", "MB", "2", "0-" + row(out, "max-instances")[1],
                                               "60", "s"]
    data = json.loads(run(FULL, "--json").output)
    assert [item["function"] for item in data["limits"]] == ["api/hello.py", "api/slow.py"]
    assert data["limits"][0]["max_duration"] == 60.0


def test_bad_file_value_names_the_key_as_written(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.fnserve]\nbody-limit = "huge"\n')
    result = CliRunner().invoke(main, ["config", str(tmp_path)], env={})
    assert result.exit_code == 2
    assert "pyproject.toml [tool.fnserve]: body-limit: bad value 'huge'" in result.output
