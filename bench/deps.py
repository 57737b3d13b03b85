"""Benchmark of the dependency step (issue 5, SPEC §7): ``python bench/deps.py``.

Generates a project needing flask + fastapi in a temporary folder (with its own ``.fnserve``) and
prints:

- cold install: first ``ensure_env`` (uv cache as it is: warm after the first run of this script);
- unchanged re-run: the same set again (goal ≤ 0.2 s: no uv process at all);
- one added small requirement (``itsdangerous``-sized: ``six``), goal ≤ 2 s with a warm uv cache;
- the same change again in a fresh project (everything warm), to separate uv from first-time costs.

``--cache-dir DIR`` uses that uv cache (default: uv's own); ``--cold-cache`` uses an empty cache in
the temp folder for the first figure (needs the network for every package).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from fnserve.deps import DepsOptions, ensure_env


def _project(root: Path, helpers: int) -> None:
    (root / "api").mkdir(parents=True)
    (root / "lib").mkdir()
    for n in range(helpers):  # helper modules: the import scan has something to do
        (root / "lib" / f"helper_{n}.py").write_text(
            "import json\nimport os\nfrom flask import jsonify\n\n" + "".join(
                f"def f{i}(x):\n    return jsonify({{'v': x + {i}}})\n\n" for i in range(40)))
    (root / "requirements.txt").write_text("flask>=3\nfastapi>=0.110\n")
    (root / "api" / "index.py").write_text("from flask import Flask\n\napp = Flask(__name__)\n")
    (root / "api" / "fast.py").write_text("from fastapi import FastAPI\n\napp = FastAPI()\n")


def _timed(label: str, project: Path, options: DepsOptions, goal: float | None = None) -> float:
    started = time.perf_counter()
    env = ensure_env(project, options)
    elapsed = time.perf_counter() - started
    verdict = "" if goal is None else ("  ok" if elapsed <= goal else f"  OVER the {goal} s goal")
    print(f"{label:<38} {elapsed:7.3f} s  changed={env.changed}  {len(env.requirements)} requirement(s){verdict}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--cold-cache", action="store_true")
    parser.add_argument("--helpers", type=int, default=200, help="helper modules to generate (default 200)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fnserve-bench-deps-") as tmp:
        cache = Path(tmp) / "uv-cache" if args.cold_cache else args.cache_dir
        options = DepsOptions(environ=dict(os.environ), uv_cache_dir=cache)
        project = Path(tmp) / "proj"
        _project(project, args.helpers)
        print(f"project {project} (flask + fastapi, {args.helpers} helper modules), Python {sys.version.split()[0]}, "
              f"uv cache {cache or 'uv default'}")
        _timed("cold install (new project)", project, options)
        _timed("unchanged re-run", project, options, goal=0.2)
        (project / "requirements.txt").write_text("flask>=3\nfastapi>=0.110\nsix\n")
        _timed("one added requirement (six)", project, options, goal=2.0)
        _timed("unchanged after the change", project, options, goal=0.2)
        (project / "requirements.txt").write_text("flask>=3\nfastapi>=0.110\n")
        _timed("requirement removed (back to cached)", project, options, goal=0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
