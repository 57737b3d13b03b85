"""Running uv (SPEC §7 "installed with uv"). The one place that starts uv processes.

``Uv`` is a small frozen value: the binary (``uv.find_uv_bin()`` by default, from the ``uv`` PyPI
package fnserve depends on) and the environment uv runs with (downloads of Pythons disabled, the
caller's ``UV_CACHE_DIR`` kept). Tests point ``binary`` at a stub to count calls.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from fnserve.errors import DependencyError

# Variables that would make uv act on another environment or project than the one we name.
_DROP = ("VIRTUAL_ENV", "CONDA_PREFIX", "UV_PROJECT_ENVIRONMENT", "UV_SYSTEM_PYTHON", "PYTHONHOME")


def default_uv_binary() -> str:
    """The uv executable shipped with the ``uv`` package; raises ``DependencyError`` if missing."""
    try:
        import uv

        return uv.find_uv_bin()
    except (ImportError, FileNotFoundError) as exc:
        raise DependencyError("the uv executable was not found", "reinstall fnserve (it depends on uv)") from exc


@dataclass(frozen=True)
class Uv:
    """``binary``: path of uv; ``environ``: the base environment (the caller's, read once at the top);
    ``cache_dir``: optional ``--cache-dir``."""

    binary: str
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    cache_dir: Path | None = None

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in self.environ.items() if k not in _DROP}
        env["UV_PYTHON_DOWNLOADS"] = "never"
        env.setdefault("UV_NO_PROGRESS", "1")
        if self.cache_dir is not None:
            env["UV_CACHE_DIR"] = str(self.cache_dir)
        return env

    def run(self, args: Sequence[str], *, cwd: Path | None = None, timeout: float = 900,
            on_line: Callable[[str], None] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``uv <args>``; returns the completed process (text output), never raises on exit
        code. ``timeout``: seconds, then uv is killed (``DependencyError``). ``on_line``: called
        with each line uv writes on stderr (no newline) as it comes, in this thread: uv reports
        ``Resolved N packages``, ``Prepared ...``, ``Installed ...`` and `` + name==version``
        there (``deps.progress.uv_note`` reads them); the returned ``stderr`` holds them all."""
        try:
            if on_line is None:
                return subprocess.run([self.binary, *args], capture_output=True, text=True, cwd=cwd,
                                      env=self.env(), timeout=timeout, stdin=subprocess.DEVNULL)
            return self._streamed([self.binary, *args], cwd, timeout, on_line)
        except (OSError, subprocess.SubprocessError) as exc:
            raise DependencyError(f"could not run uv ({self.binary}): {exc}",
                                  "check that uv is installed and runnable") from exc

    def _streamed(self, argv: list[str], cwd: Path | None, timeout: float,
                  on_line: Callable[[str], None]) -> subprocess.CompletedProcess[str]:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                                env=self.env(), stdin=subprocess.DEVNULL, errors="replace")
        stdout, stderr = proc.stdout, proc.stderr
        assert stdout is not None and stderr is not None  # both are pipes
        out: list[str] = []
        reader = threading.Thread(target=lambda: out.append(stdout.read()), name="fnserve-uv-stdout", daemon=True)
        reader.start()
        fired = threading.Event()

        def kill() -> None:
            fired.set()
            proc.kill()

        timer = threading.Timer(timeout, kill)
        timer.start()
        err: list[str] = []
        try:
            for line in stderr:
                err.append(line)
                on_line(line.rstrip("\n"))
            proc.wait()
        finally:
            timer.cancel()
            if proc.poll() is None:  # on_line raised: do not leave uv running
                proc.kill()
                proc.wait()
            reader.join()
        if fired.is_set():
            raise subprocess.TimeoutExpired(argv, timeout, "".join(out), "".join(err))
        return subprocess.CompletedProcess(argv, proc.returncode, "".join(out), "".join(err))


_BECAUSE = re.compile(r"Because (?:there is no version of |only )?([A-Za-z0-9][A-Za-z0-9._\-]*)")
_NOT_FOUND = re.compile(r"([A-Za-z0-9][A-Za-z0-9._\-]*) was not found in the package registry")


def failing_requirement(stderr: str, names: Sequence[str]) -> str | None:
    """The requirement uv's error is about: ``names`` (canonical names of the set) checked against
    uv's ``was not found`` / ``Because X ...`` sentences, then any name mentioned at all."""
    for pattern in (_NOT_FOUND, _BECAUSE):
        match = pattern.search(stderr)
        if match:
            found = match.group(1).lower().replace("_", "-").rstrip(".")
            for name in names:
                if found == name or found.startswith(name + "=") or found.startswith(name + "["):
                    return name
            return found
    lowered = stderr.lower()
    for name in names:
        if re.search(rf"(?<![a-z0-9\-_]){re.escape(name)}(?![a-z0-9\-_])", lowered):
            return name
    return None


_PROGRESS = ("Resolved", "Prepared", "Using ", "Audited", "Installed", "Uninstalled", "Downloading", "Downloaded",
             "Building", "Built")


def summarize_error(stderr: str, limit: int = 12) -> str:
    """The meaningful lines of a uv error (progress and blank lines dropped), at most ``limit``."""
    lines = [line.rstrip() for line in stderr.splitlines() if line.strip()
             and not line.lstrip().startswith(_PROGRESS)]
    return "\n".join(lines[-limit:])
