"""``project.report`` (issue 13 item 4): Vercel's ``.py`` aliases are one note line instead of
doubling the route table; the redirects, rewrites and legacy routes of ``vercel.json`` are shown
in the order they apply; the JSON report has the same content."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fnserve.cli import main
from fnserve.config import load_config
from fnserve.project import load_project
from fnserve.project.report import render_text, to_json

PROJECTS = Path(__file__).parents[1] / "projects"


def _report(name: str) -> tuple[str, dict]:
    config = load_config(PROJECTS / name, {}, {}, mode="dev")
    project = load_project(config.project_dir)
    return render_text(project, config.vercel), to_json(project, config.vercel)


def test_aliases_fold_into_one_note_and_rules_are_listed() -> None:
    text, data = _report("dev_vercel")
    lines = text.splitlines()
    assert lines[0].endswith(": 10 routes, 10 functions (layout: vercel)")
    table = lines[lines.index(next(x for x in lines if x.startswith("ROUTE"))):]
    rows = table[1:table.index("")]
    assert len(rows) == 10 and not any(".py " in row.split("  ")[0] for row in rows)  # no /api/x.py row
    assert "note: 8 Vercel aliases not listed: each file also answers at its name with .py (e.g. /api/crash.py)" in lines
    start = lines.index("Redirects (vercel.json):")
    assert [x.split() for x in lines[start + 1:start + 3]] == [
        ["/old-user/:id", "→", "/api/users/:id", "308"], ["/temp", "→", "/api/hello", "307"]]
    start = lines.index("Rewrites (vercel.json):")
    assert [x.split() for x in lines[start + 1:start + 3]] == [["/u/:id", "→", "/api/users/:id"], ["/h", "→", "/api/hello"]]
    assert sum(r["match"] == "alias" for r in data["routes"]) == 8  # machines still get every route
    assert data["redirects"][0] == {"source": "/old-user/:id", "destination": "/api/users/:id", "status": 308,
                                    "conditional": False}
    assert [r["source"] for r in data["rewrites"]] == ["/u/:id", "/h"]


def test_legacy_routes_are_listed_in_order() -> None:
    text, _ = _report("config_legacy_routes")
    lines = text.splitlines()
    start = lines.index("Routes (vercel.json, legacy, applied first):")
    assert [x.split()[0] for x in lines[start + 1:start + 5]] == ["/old/(.*)", "handle:", "/api/(?<name>[^/]+)", "/(.*)"]
    assert "  handle: filesystem" in lines


def test_no_rules_no_aliases_no_sections() -> None:
    text, data = _report("edgeone_routes")
    assert "note:" not in text and "Redirects" not in text and "Rewrites" not in text
    assert data["redirects"] == [] and data["rewrites"] == []
    project = load_project(PROJECTS / "dev_vercel")
    assert "Redirects" not in render_text(project)  # without the config: the table only
    assert "redirects" not in to_json(project)


def test_routes_command_shows_the_rules() -> None:
    result = CliRunner().invoke(main, ["routes", str(PROJECTS / "dev_vercel")])
    assert result.exit_code == 0, result.output
    assert "Rewrites (vercel.json):" in result.stdout and "note: 8 Vercel aliases" in result.stdout
    result = CliRunner().invoke(main, ["routes", str(PROJECTS / "dev_vercel"), "--json"])
    assert json.loads(result.stdout)["redirects"][1]["status"] == 307
