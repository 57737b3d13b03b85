"""Benchmark of ``fnserve build`` (issue 11): ``python bench/build.py``.

Copies ``examples/showcase`` to a temporary folder and prints, side by side:

- full build: the first build (the project's env is created too unless ``--env-warm``; uv's cache
  as it is);
- full build, env ready: ``--force`` with the env already there (copying, hashing, linking);
- unchanged rebuild: the same inputs again (goal ≤ 1 s: one stat walk, nothing written);
- one file changed: ``api/hello.py`` touched (unchanged files are hard-linked from the previous
  output, the env too).

``--no-install`` builds without a dependency env (functions then run on fnserve's interpreter).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from fnserve.build.output import build_output
from fnserve.config import load_config

SHOWCASE = Path(__file__).resolve().parents[1] / "examples" / "showcase"
GOAL_UNCHANGED = 1.0  # s


def _timed(label: str, project: Path, overrides: dict[str, object], *, force: bool = False,
           goal: float | None = None) -> float:
    started = time.perf_counter()
    config = load_config(project, overrides, os.environ, mode="build")
    result = build_output(config, force=force)
    elapsed = time.perf_counter() - started
    verdict = "" if goal is None else ("  ok" if elapsed <= goal else f"  OVER the {goal} s goal")
    files = sum(len(f.files) for f in result.manifest.functions)
    print(f"{label:<34} {elapsed:7.3f} s  reused={str(result.reused):<5} {len(result.manifest.functions)} functions, "
          f"{files} function files, {len(result.manifest.envs)} env(s){verdict}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-install", action="store_true", help="build without a dependency env")
    parser.add_argument("--rounds", type=int, default=3, help="unchanged rebuilds to time (best is shown too)")
    args = parser.parse_args()
    overrides: dict[str, object] = {"install": False} if args.no_install else {}
    with tempfile.TemporaryDirectory(prefix="fnserve-bench-build-") as tmp:
        project = Path(tmp) / "showcase"
        shutil.copytree(SHOWCASE, project)
        print(f"fnserve build of examples/showcase (Python {sys.version.split()[0]}, install={not args.no_install})")
        _timed("full build (first, env created)", project, overrides)
        _timed("full build (--force, env ready)", project, overrides, force=True)
        times = [_timed(f"unchanged rebuild #{i + 1}", project, overrides, goal=GOAL_UNCHANGED) for i in range(args.rounds)]
        hello = project / "api" / "hello.py"
        hello.write_text(hello.read_text() + "\n# changed\n")
        _timed("one file changed", project, overrides)
        print(f"unchanged rebuild: best {min(times):.3f} s (goal ≤ {GOAL_UNCHANGED} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
