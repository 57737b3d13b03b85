"""Route matching speed: fnserve's segment trie vs a naive linear regex scan (issue 2, item 6).

Usage: ``python bench/route_match.py [--seconds 0.4]``. For 10, 100, 1,000 and 10,000 generated
routes (a mix of static, ``[param]``, nested ``[param]``, catch-all and mounted framework apps,
built through the same ``routes_for`` code as ``load_project``), it measures matches per second for
``RouteTable.match`` and for the baseline (every route compiled to a regex, sorted by the same
priority, scanned until the first match), on the same request paths in the same run, checks that
both agree on every path, and prints the speed-up and how the trie's cost grows with the route
count. Each measurement runs for about ``--seconds`` (bounded), so the whole run takes ~10 s.
"""

from __future__ import annotations

import argparse
import random
import re
import time
from pathlib import Path

from fnserve.project.matcher import RouteTable
from fnserve.project.routes import priority_key, routes_for
from fnserve.project.types import Entry, EntryKind, Function, Layout, Route

ROOT = Path("/bench/project")
SIZES = (10, 100, 1_000, 10_000)
PATHS_PER_SIZE = 2_000


def generate_routes(n: int) -> list[Route]:
    """``n`` routes in sections of ten: six static files, ``[id]``, ``[id]/edit``,
    ``[...rest]`` and a Flask-style app mount."""
    files: list[tuple[str, EntryKind]] = []
    for i in range(n):
        section, slot = divmod(i, 10)
        base = f"api/sec{section}"
        if slot < 6:
            files.append((f"{base}/item{slot}.py", EntryKind.HANDLER))
        elif slot == 6:
            files.append((f"{base}/[id].py", EntryKind.HANDLER))
        elif slot == 7:
            files.append((f"{base}/[id]/edit.py", EntryKind.HANDLER))
        elif slot == 8:
            files.append((f"{base}/[...rest].py", EntryKind.HANDLER))
        else:
            files.append((f"{base}/app.py", EntryKind.APP))
    routes: list[Route] = []
    for rel, kind in files:
        path = ROOT / rel
        fn = Function(rel, path, rel[:-3].replace("/", "."), Layout.VERCEL, Entry(kind, "app", 1), (ROOT,))
        routes += [r for r in routes_for(fn) if not r.alias]
    return routes


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
    print(f"{'routes':>7}  {'trie matches/s':>15}  {'naive matches/s':>16}  {'speed-up':>9}  {'trie ns/match':>14}")
    costs = {}
    for n in SIZES:
        routes = generate_routes(n)
        table, naive = RouteTable(routes), NaiveMatcher(routes)
        paths = generate_paths(n, PATHS_PER_SIZE, rng)
        for path in paths:
            hit = table.match(path)
            assert (hit.route if hit else None) is naive.match(path), f"trie and baseline disagree on {path}"
        naive_paths = paths[: max(50, PATHS_PER_SIZE * 100 // n)]  # keep the slow baseline bounded
        trie_rate, naive_rate = rate(table.match, paths, args.seconds), rate(naive.match, naive_paths, args.seconds)
        costs[n] = 1e9 / trie_rate
        print(f"{len(routes):>7,}  {trie_rate:>15,.0f}  {naive_rate:>16,.0f}  {trie_rate / naive_rate:>8.1f}x  {costs[n]:>14,.0f}")
    growth = costs[SIZES[-1]] / costs[SIZES[0]]
    print(f"trie cost per match grew {growth:.2f}x while routes grew {SIZES[-1] // SIZES[0]:,}x (sub-linear: {growth < 10})")


if __name__ == "__main__":
    main()
