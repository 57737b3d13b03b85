"""`fnserve routes` on the bundled examples and on broken projects (CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from fnserve.cli import main

HERE = Path(__file__).parents[1]
EXAMPLES = HERE.parent / "examples"
PROJECTS = HERE / "projects"


def run(*args):
    return CliRunner().invoke(main, ["routes", *map(str, args)])


def table_rows(output: str) -> list[list[str]]:
    """The whitespace-split rows of the route table (between the header and the first blank line)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:2] == ["ROUTE", "METHODS"])
    rows = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


def test_routes_showcase_table():
    result = run(EXAMPLES / "showcase")
    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout) == [
        ["/api/asgi_raw", "*", "app", "api/asgi_raw.py", "mount"],
        ["/api/fastapi_app", "*", "app", "api/fastapi_app.py", "mount"],
        ["/api/files/[...path]", "GET,HEAD,OPTIONS", "handler", "api/files/[...path].py", "exact"],
        ["/api/flask_app", "*", "app", "api/flask_app.py", "mount"],
        ["/api/hello", "GET,HEAD,POST,OPTIONS", "handler", "api/hello.py", "exact"],
        ["/api/users/[id]", "GET,HEAD,OPTIONS", "handler", "api/users/[id].py", "exact"],
    ]  # the .py aliases (/api/hello.py ...) are one note line below the table (issue 13 item 4)
    assert "note: 4 Vercel aliases not listed: each file also answers at its name with .py (e.g. /api/asgi_raw.py)" \
        in result.stdout
    assert "6 routes, 6 functions (layout: vercel)" in result.stdout
    assert "api/_lib/greet.py  used by api/flask_app.py, api/hello.py" in result.stdout
    assert "Warnings:" not in result.stdout and "Errors:" not in result.stdout


def test_routes_edgeone_table():
    result = run(EXAMPLES / "edgeone")
    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout) == [
        ["/api/flaskapp", "*", "app", "cloud-functions/api/flaskapp/index.py", "mount"],
        ["/api/hello", "GET,HEAD,OPTIONS", "handler", "cloud-functions/api/hello.py", "mount"],
        ["/api/users/[id]", "GET,HEAD,DELETE,OPTIONS", "handler", "cloud-functions/api/users/[id].py", "exact"],
        ["/api/[[default]]", "GET,HEAD,OPTIONS", "handler", "cloud-functions/api/[[default]].py", "exact"],
    ]
    assert "(layout: edgeone)" in result.stdout


def test_routes_json():
    result = run(EXAMPLES / "edgeone", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["valid"] is True and data["zero_config"] is False
    flask = data["routes"][0]
    assert flask == {
        "pattern": "/api/flaskapp", "methods": ["*"], "kind": "app", "file": "cloud-functions/api/flaskapp/index.py",
        "module": "api.flaskapp.index", "layout": "edgeone", "match": "mount",
    }
    assert [f["id"] for f in data["functions"]] == sorted(f["id"] for f in data["functions"])
    assert data["problems"] == []


def test_routes_zero_config_django():
    result = run(PROJECTS / "zc_django")
    assert result.exit_code == 0, result.output
    assert ["/", "*", "application", "mysite/wsgi.py", "mount"] in table_rows(result.stdout)
    assert "zero-config app at /" in result.stdout


def test_routes_syntax_error_prints_table_then_exits_2():
    result = run(PROJECTS / "syntax_error")
    assert result.exit_code == 2
    assert ["/api/broken", "-", "error", "api/broken.py", "mount"] in table_rows(result.stdout)
    assert ["/api/ok", "GET,HEAD,OPTIONS", "handler", "api/ok.py", "exact"] in table_rows(result.stdout)
    assert "api/broken.py:5: syntax error" in result.stdout
    assert "must be fixed" in result.stderr


def test_routes_excluded_folder_warnings():
    result = run(PROJECTS / "excluded")
    assert result.exit_code == 0
    assert "api/tests/test_hello.py:4: exports `handler` but is under the excluded folder tests/" in result.stdout


def test_routes_duplicate_exits_2_naming_both_files():
    result = run(PROJECTS / "conflict_index")
    assert result.exit_code == 2
    assert "route /api/hello is produced by both api/hello.py and api/hello/index.py" in result.stderr
    assert "hint:" in result.stderr


def test_routes_nothing_to_serve_exits_2_with_hint():
    result = run(PROJECTS / "zc_nothing")
    assert result.exit_code == 2
    assert "no entrypoint found" in result.stderr and "app.py (defines Flask, create_app)" in result.stderr
    assert "[tool.fnserve] entrypoint" in result.stderr


def test_routes_configured_entrypoint_from_pyproject():
    result = run(PROJECTS / "zc_configured")
    assert result.exit_code == 0, result.output
    assert table_rows(result.stdout) == [["/", "*", "app", "service/web.py", "mount"]]
