"""Incremental builds (issue 11): unchanged inputs → nothing written; one changed file → the
others are hard-linked from the previous output instead of copied."""

from __future__ import annotations

import json
import os
import time

from buildsupport import handler, run_cli, write_project


def test_unchanged_rebuild_reuses_the_output_and_a_change_rebuilds(tmp_path):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'"), "api/b.py": handler("'b'"),
                                             "data/info.txt": "info\n"})
    assert run_cli("build", str(project), "--no-install").exit_code == 0
    out = project / ".fnserve" / "output"
    manifest = (out / "manifest.json").read_text()
    inode = out.stat().st_ino

    started = time.perf_counter()
    again = run_cli("build", str(project), "--no-install")
    assert again.exit_code == 0 and "up to date" in again.output
    assert time.perf_counter() - started < 1.0
    assert (out / "manifest.json").read_text() == manifest and out.stat().st_ino == inode

    kept = (out / "project" / "data" / "info.txt").stat().st_ino
    b = project / "api" / "b.py"
    b.write_text(handler("'b2'"))
    os.utime(b, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    changed = run_cli("build", str(project), "--no-install")
    assert changed.exit_code == 0 and "up to date" not in changed.output
    assert "'b2'" in (out / "project" / "api" / "b.py").read_text()
    assert (out / "project" / "data" / "info.txt").stat().st_ino == kept  # linked from the previous output
    assert json.loads((out / "manifest.json").read_text())["inputs"] != json.loads(manifest)["inputs"]

    # a different setting is a different input; --force rebuilds anyway
    assert "up to date" not in run_cli("build", str(project), "--no-install", "--no-detect-imports").output
    assert "up to date" not in run_cli("build", str(project), "--no-install", "--no-detect-imports", "--force").output


def test_a_build_command_disables_linking_from_the_previous_output(tmp_path):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'"), "data/info.txt": "info\n",
                                             "vercel.json": json.dumps({"buildCommand": "echo x >> data/info.txt"})})
    assert run_cli("build", str(project), "--no-install").exit_code == 0
    out = project / ".fnserve" / "output"
    assert (out / "project" / "data" / "info.txt").read_text() == "info\nx\n"
    (project / "api" / "a.py").write_text(handler("'a2'"))
    assert run_cli("build", str(project), "--no-install", "--force").exit_code == 0
    # the command ran on a fresh copy: the previous output's file was not appended to through a link
    assert (out / "project" / "data" / "info.txt").read_text() == "info\nx\n"
    assert (project / "data" / "info.txt").read_text() == "info\n"
