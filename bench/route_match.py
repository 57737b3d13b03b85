"""Route matching speed: fnserve's segment trie vs a naive linear regex scan (issue 2, item 6).

Usage: ``python bench/route_match.py [--seconds 0.4]``. For 10, 100, 1,000 and 10,000 generated
function files (a mix of static, ``[param]``, nested ``[param]``, catch-all and mounted framework
apps, plus the Vercel ``.py`` aliases) written to a temporary project and loaded with
``load_project``, it measures matches per second for
``RouteTable.match`` and for the baseline (every route compiled to a regex, sorted by the same
priority, scanned until the first match), on the same request paths in the same run, checks that
both agree on every path, and prints the speed-up and how the trie's cost grows with the route
count. Each measurement runs for about ``--seconds`` (bounded); the whole run takes ~15 s.
"""

from __future__ import annotations

import argparse
import random
import re
import tempfile
import time
from pathlib import Path

from fnserve.project import load_project
from fnserve.project.routes import priority_key
from fnserve.project.types import Route

SIZES = (10, 100, 1_000, 10_000)
PATHS_PER_SIZE = 2_000


HANDLER = "from http.server import BaseHTTPRequestHandler\n\n\nclass handler(BaseHTTPRequestHandler):\n    def do_GET(self):\n        self.send_response(204)\n        self.end_headers()\n"
APP = "from flask import Flask\n\napp = Flask(__name__)\n"


def generate_project(folder: Path, n: int) -> None:
    """Write a Vercel-layout project with ``n`` function files under ``folder/api``, in sections
    of ten: six static handlers, ``[id]``, ``[id]/edit``, ``[...rest]`` and a Flask app (a mount)."""
    for i in range(n):
        section, slot = divmod(i, 10)
        base = folder / "api" / f"sec{section}"
        rel, source = (
            (f"item{slot}.py", HANDLER) if slot < 6
            else ("[id].py", HANDLER) if slot == 6
            else ("[id]/edit.py", HANDLER) if slot == 7
            else ("[...rest].py", HANDLER) if slot == 8
            else ("app.py", APP)
        )
        path = base / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)


def generate_paths(n_routes: int, count: int, rng: random.Random) -> list[str]:
    """Request paths over all sections: hits of every route kind, plus 10 % misses (404)."""
    sections = max(1, n_routes // 10)
    shapes = ["/api/sec{s}/item{k}", "/api/sec{s}/42", "/api/sec{s}/42/edit", "/api/sec{s}/a/b/c",
              "/api/sec{s}/app/users/7", "/api/sec{s}/item{k}/", "/api/sec{s}", "/api/sec{s}/app",
              "/api/sec{s}/42/x", "/nope/{s}"]
    return [rng.choice(shapes).format(s=rng.randrange(sections), k=rng.randrange(6)) for _ in range(count)]


class NaiveMatcher:
    """The baseline: one compiled regex per route, sorted by priority, scanned linearly."""

    _PART = {"param": "/([^/]+)", "catchall": "/(.+)", "optional": "(?:/(.*))?"}

    def __init__(self, routes: list[Route]) -> None:
        compiled = []
        for route in routes:
            rx = "".join("/" + re.escape(s.value) if s.kind == "literal" else self._PART[s.kind] for s in route.segments)
            rx += "(?:/.*)?" if route.mount else ""
            compiled.append((priority_key(route), re.compile(f"^{rx}/?$"), route))
        compiled.sort(key=lambda item: item[0])
        self._compiled = [(rx, route) for _, rx, route in compiled]

    def match(self, path: str) -> Route | None:
        path = path.rstrip("/")
        for rx, route in self._compiled:
            if rx.match(path):
                return route
        return None


def rate(match, paths: list[str], seconds: float) -> float:
    """Matches per second of ``match`` over ``paths``, repeated for about ``seconds`` (at most
    200 rounds, at least one)."""
    done, start = 0, time.perf_counter()
    for _ in range(200):
        for path in paths:
            match(path)
        done += len(paths)
        if time.perf_counter() - start >= seconds:
            break
    return done / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.4, help="time per measurement (s)")
    args = parser.parse_args()
    rng = random.Random(2026)
    print(f"{'files':>7}  {'routes':>7}  {'load s':>7}  {'trie matches/s':>15}  {'naive matches/s':>16}  {'speed-up':>9}  {'trie ns/match':>14}")
    costs = {}
    for n in SIZES:
        with tempfile.TemporaryDirectory(prefix="fnserve-bench-") as tmp:
            generate_project(Path(tmp), n)
            start = time.perf_counter()
            table = load_project(tmp).routes
            load_seconds = time.perf_counter() - start
        naive = NaiveMatcher(list(table.routes))
        paths = generate_paths(n, PATHS_PER_SIZE, rng)
        naive_paths = paths[: max(50, PATHS_PER_SIZE * 100 // n)]  # keep the slow baseline bounded
        for path in naive_paths:
            hit = table.match(path)
            assert (hit.route if hit else None) is naive.match(path), f"trie and baseline disagree on {path}"
        trie_rate, naive_rate = rate(table.match, paths, args.seconds), rate(naive.match, naive_paths, args.seconds)
        costs[n] = 1e9 / trie_rate
        print(f"{n:>7,}  {len(table):>7,}  {load_seconds:>7.2f}  {trie_rate:>15,.0f}  {naive_rate:>16,.0f}  "
              f"{trie_rate / naive_rate:>8.1f}x  {costs[n]:>14,.0f}")
    growth = costs[SIZES[-1]] / costs[SIZES[0]]
    print(f"trie cost per match grew {growth:.2f}x while function files grew {SIZES[-1] // SIZES[0]:,}x "
          f"(sub-linear: {growth < 10})")


if __name__ == "__main__":
    main()
