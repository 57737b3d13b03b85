"""Issue 13 items 1 and 6: the wheel carries the templates as package data, and building it prints
no setuptools warning (``make demo``'s output starts with fnserve, not packaging noise)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_wheel_has_the_templates_and_builds_without_warnings(tmp_path: Path) -> None:
    tree = tmp_path / "tree"  # a copy: the build writes build/ and *.egg-info next to the sources
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-v",
         "-w", str(tmp_path), str(tree)],
        capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    noise = [line for line in (done.stdout + done.stderr).splitlines()
             if ("Warning" in line or "!!" in line or "license" in line.lower()) and "Location 'file" not in line]
    assert noise == []
    wheel = next(tmp_path.glob("fnserve-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    templates = [n for n in names if n.startswith("fnserve/init/templates/") and n.endswith(".tmpl")]
    source = list((ROOT / "src/fnserve/init/templates").rglob("*.tmpl"))
    assert len(templates) == len(source) > 0
    assert "fnserve/init/templates/mixed/{{fn}}/files/{{catchall}}.py.tmpl" in names
