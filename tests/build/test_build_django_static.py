"""``fnserve build`` of a Django project: ``collectstatic`` output in the output's ``static/`` at
``STATIC_URL``'s path (SPEC §4 "Django", §8.2; issue 9 item 4), nothing written into the project."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from buildsupport import run_cli, snapshot

pytest.importorskip("django")

PROJECTS = Path(__file__).parent.parent / "projects"


def test_build_puts_collected_files_in_static(tmp_path) -> None:
    project = tmp_path / "django_static"
    shutil.copytree(PROJECTS / "django_static", project)
    before = snapshot(project)
    out = tmp_path / "out"
    result = run_cli("build", str(project), "--no-install", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert (out / "static" / "static" / "shop" / "style.css").read_text() == "body { color: red }\n"
    assert (out / "static" / "static" / "site.js").is_file()
    assert not (project / "staticfiles").exists()
    after = snapshot(project)
    assert {k for k in after if "__pycache__" not in k} == {k for k in before if "__pycache__" not in k}
