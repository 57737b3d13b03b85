"""What the dashboard costs on the request path (issue 13 item 2): a micro-benchmark of the
``FrontApp`` access hooks, in one process, no server (so a shared, noisy machine still gives stable
numbers: the best of several repeats of many calls).

- ``fnserve dev``: with no page open its hook is ``log_access``, the hook it had before the
  dashboard (the feed swaps in ``AccessLog(feed=...)`` only while a page is open); both measured;
- ``fnserve start``: ``AccessLog(metrics)`` (before) against ``AccessLog(metrics, feed)`` with
  ``dashboard = true`` and no page open (one attribute test), and with a page open;
- ``note_lease``: dev's new ``on_lease`` (pid and cold/warm on the access line), per request.

Each with the ``fnserve.access`` logger off (the hook's own cost) and on, writing text lines to a
null stream (the whole per-request logging cost).

    .venv/bin/python bench/dashboard.py [--calls 200000] [--repeat 15]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import time
from collections.abc import Callable
from types import SimpleNamespace

from fnserve.server.dashboard.feed import DashboardFeed
from fnserve.server.logs import ACCESS, install
from fnserve.server.metrics import Metrics
from fnserve.server.observe import CURRENT, AccessLog, RequestInfo, log_access, note_lease

SCOPE = {"type": "http", "method": "GET", "path": "/api/hello", "query_string": b"", "headers": []}


def best_ns(call: Callable[[], None], calls: int, repeat: int) -> float:
    """Nanoseconds per call: the best of ``repeat`` runs of ``calls`` calls."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(calls):
            call()
        best = min(best, (time.perf_counter_ns() - start) / calls)
    return best


def caller(hook: Callable[..., None], started: float) -> Callable[[], None]:
    return lambda: hook(SCOPE, 200, started, "api/hello.py")


def with_page(feed: DashboardFeed, hook: Callable[..., None], started: float, calls: int, repeat: int) -> float:
    """``hook``'s cost while one page is subscribed to ``feed`` (its queue emptied as it fills)."""

    async def run() -> float:
        sub = feed.subscribe(limit=10**9)

        def call() -> None:
            hook(SCOPE, 200, started, "api/hello.py")
            if len(sub.items) > 10000:
                sub.items.clear()

        try:
            return best_ns(call, calls, repeat)
        finally:
            feed.unsubscribe(sub)

    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    info = RequestInfo("4f2a9c0d1e2b3a4c")
    info.instance, info.cold = 12345, False
    CURRENT.set(info)
    started = time.perf_counter()
    feed = DashboardFeed()
    lease = SimpleNamespace(instance=SimpleNamespace(pid=12345), cold=False)
    output = install("text", io.StringIO(), dev=True)
    rows: dict[str, list[float]] = {}
    try:
        for logging_on in (False, True):
            ACCESS.setLevel(logging.INFO if logging_on else logging.WARNING)
            found = {
                "dev, no page open (log_access, as before)": best_ns(caller(log_access, started), args.calls, args.repeat),
                "dev, one page open (AccessLog(feed))": with_page(feed, AccessLog(feed=feed), started,
                                                                  args.calls // 4, args.repeat),
                "start, before (AccessLog(metrics))": best_ns(caller(AccessLog(Metrics()), started), args.calls,
                                                              args.repeat),
                "start, dashboard on, no page open": best_ns(caller(AccessLog(Metrics(), feed), started), args.calls,
                                                             args.repeat),
                "start, dashboard on, one page open": with_page(feed, AccessLog(Metrics(), feed), started,
                                                                args.calls // 4, args.repeat),
            }
            feed.requests.clear()
            feed.samples.clear()
            output.handler.stream = io.StringIO()  # drop what was written
            for name, ns in found.items():
                rows.setdefault(name, []).append(ns)
        note = best_ns(lambda: note_lease(lease), args.calls, args.repeat)
    finally:
        output.remove()
    print(f"access hook per request (best of {args.repeat} runs; ns)")
    print(f"{'hook':44} {'access log off':>15} {'access log on':>15}")
    for name, (off, on) in rows.items():
        print(f"{name:44} {off:15.0f} {on:15.0f}")
    before, after = rows["start, before (AccessLog(metrics))"], rows["start, dashboard on, no page open"]
    print("fnserve dev, no page open: the same hook as before the dashboard (+0 ns by construction)")
    print(f"fnserve start --dashboard, no page open: {after[0] - before[0]:+.0f} ns (log off), "
          f"{after[1] - before[1]:+.0f} ns (log on)")
    print(f"note_lease (dev's on_lease: pid and cold/warm on the access line): {note:.0f} ns per request")


if __name__ == "__main__":
    main()
