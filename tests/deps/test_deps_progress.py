"""Installs a person can watch (issue 13 item 3): uv's lines as progress messages, streamed as they
come; plain lines off a terminal, a live line on one.

Real installs use a wheel made here and served on loopback (``localindex``): no network.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from localindex import LocalIndex, make_wheel

from fnserve.deps.progress import LiveLine, Note, PlainLines, command_progress, install_note, uv_note
from fnserve.deps.uv import Uv, summarize_error
from fnserve.errors import DependencyError


@pytest.mark.parametrize(("line", "text", "waiting"), [
    ("Resolved 8 packages in 120ms", "resolved 8 packages in 120ms", "downloading and building what is not cached"),
    ("Resolved 1 package in 3ms", "resolved 1 package in 3ms", "downloading and building what is not cached"),
    ("Prepared 3 packages in 1.21s", "prepared 3 packages in 1.21s", "installing"),
    ("Installed 2 packages in 2ms", "installed 2 packages in 2ms", "finishing the environment"),
    ("Uninstalled 1 package in 0.84ms", "removed 1 package in 0.84ms", "installing"),
    (" + itsdangerous==2.2.0", "+ itsdangerous==2.2.0", "finishing the environment"),
    (" - six==1.17.0", "- six==1.17.0", "finishing the environment"),
    ("Downloading numpy (16.1MiB)", "downloading numpy (16.1MiB)", "downloading and building what is not cached"),
    (" Downloaded numpy", "downloaded numpy", "downloading and building what is not cached"),
    ("warning: something odd", "uv warning: something odd", None),
])
def test_uv_lines_become_progress_messages(line, text, waiting) -> None:
    note = uv_note(line)
    assert note == text and isinstance(note, Note) and note.waiting == waiting


@pytest.mark.parametrize("line", ["Using Python 3.11.2 environment at: v", "error: No solution found",
                                  "  cause: Because six was not found", ""])
def test_noise_and_error_text_are_not_progress(line) -> None:
    assert uv_note(line) is None


def test_install_note_names_the_requirements() -> None:
    assert install_note(["flask", "httpx"], False) == "installing 2 requirement(s): flask, httpx"
    many = install_note([f"p{i}" for i in range(10)], True)
    assert many.startswith("installing 10 requirement(s): p0, p1") and "and 2 more" in many
    assert many.endswith("(seeded from the previous environment)") and many.waiting.startswith("resolving p0")


def test_error_summary_leaves_out_progress_lines() -> None:
    stderr = "Resolved 2 packages in 1ms\nDownloading x (1MiB)\nInstalled 1 package in 1ms\nerror: boom\n"
    assert summarize_error(stderr) == "error: boom"


def _stub(tmp_path: Path, script: str) -> str:
    stub = tmp_path / "uv-stub"
    stub.write_text("#!/bin/sh\n" + script)
    stub.chmod(0o755)
    return str(stub)


def test_uv_lines_are_streamed_as_they_come(tmp_path) -> None:
    uv = Uv(_stub(tmp_path, "echo 'Resolved 1 package in 1ms' >&2\necho out\nsleep 0.6\necho ' + x==1' >&2\n"))
    arrived: list[tuple[str, float]] = []
    proc = uv.run(["pip", "install"], on_line=lambda line: arrived.append((line, time.monotonic())))
    assert proc.returncode == 0 and proc.stdout == "out\n"
    assert proc.stderr == "Resolved 1 package in 1ms\n + x==1\n"
    assert [line for line, _ in arrived] == ["Resolved 1 package in 1ms", " + x==1"]
    assert arrived[1][1] - arrived[0][1] >= 0.4  # the first line came before uv finished


def test_streamed_uv_past_its_timeout_is_killed(tmp_path) -> None:
    uv = Uv(_stub(tmp_path, "echo 'Resolved 1 package in 1ms' >&2\nexec sleep 20\n"))
    started = time.monotonic()
    with pytest.raises(DependencyError, match="could not run uv"):
        uv.run(["pip", "install"], timeout=0.5, on_line=lambda line: None)
    assert time.monotonic() - started < 5


def test_plain_lines_off_a_terminal() -> None:
    out = io.StringIO()
    with command_progress(out, "deps: ") as progress:
        assert isinstance(progress, PlainLines)
        progress(Note("resolved 1 package in 1ms", "installing"))
    assert out.getvalue() == "deps: resolved 1 package in 1ms\n"


def test_live_line_prints_messages_above_a_spinner_of_what_is_awaited() -> None:
    from rich.console import Console

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, no_color=True)
    with LiveLine(console, "deps: ") as live:
        live(Note("resolved 3 packages in 5ms", "downloading and building what is not cached"))
        assert live.status == "downloading and building what is not cached"
        live.live.refresh()
        live("a plain message")
        assert live.status == "a plain message"
    text = out.getvalue()
    assert "deps: resolved 3 packages in 5ms" in text and "deps: a plain message" in text
    assert "deps: downloading and building what is not cached (0 s)" in text  # the spinner line


def test_fnserve_deps_prints_names_and_progress_as_plain_lines(tmp_path) -> None:
    make_wheel(tmp_path / "wheels", "fnserve-tiny-pkg")
    project = tmp_path / "project"
    project.mkdir()
    with LocalIndex(tmp_path / "wheels") as index:
        (project / "requirements.txt").write_text(f"--index-url {index.url}\nfnserve-tiny-pkg\n")
        proc = subprocess.run(
            [sys.executable, "-m", "fnserve", "deps", str(project), "--no-detect-imports"], capture_output=True,
            text=True, timeout=60, env={**os.environ, "UV_CACHE_DIR": str(tmp_path / "uv-cache")})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert "deps: installing 1 requirement(s): fnserve-tiny-pkg" in lines
    assert any(line.startswith("deps: resolved 1 package in") for line in lines), lines
    assert any(line.startswith("deps: installed 1 package in") for line in lines), lines
    assert "deps: + fnserve-tiny-pkg==1.0" in lines
    assert "\x1b" not in proc.stderr  # not a terminal: no live line, no colours
