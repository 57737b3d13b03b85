"""Metrics of ``fnserve start`` in the Prometheus text exposition format 0.0.4 (issue 6 item 5).

Hand-written (no ``prometheus_client`` dependency): counters and histograms are plain dicts
updated on the event loop thread only, so no locks. Recording a request costs one dict lookup and
one ``bisect`` (about 1 µs). Exposed series (``function``: the function id such as
``api/users/[id].py``, or ``static`` / ``redirect`` / ``-`` for answers no function gave)::

    fnserve_requests_total{function,status}                counter
    fnserve_request_duration_seconds{function}             histogram (arrival → last byte sent)
    fnserve_cold_starts_total{function}                    counter   (instances that became ready)
    fnserve_cold_start_duration_seconds{function}          histogram (launch → READY of an instance)
    fnserve_instances{function,state}                      gauge     (from Supervisor.status())
    fnserve_function_inflight{function}                    gauge     (requests inside instances)
    fnserve_queue_depth{function}                          gauge     (requests waiting for an instance)
    fnserve_function_load_failed{function}                 gauge     (1 while its load failed; retried)
    fnserve_load_failures_total{function}                  counter   (failed imports / lifespan startups)
    fnserve_instance_replacements_total{function,reason}   counter   (max_requests, failures, heartbeat, memory, duration)
    fnserve_reloads_total{result}                          counter   (SIGHUP reloads: ok / failed)
    fnserve_ready                                          gauge     (1 when /_fnserve/ready answers 200)
    fnserve_direct_connections_total{event}                counter   (direct path: passed, handed_back, lost)
    process_start_time_seconds                             gauge     (unix time)

Instances are read from ``Supervisor.status()`` (``{id: {"instances": [{pid, state, inflight,
ready_ms}], "starting": int, "queued": int}}``) at scrape time only (it walks every function); a
cold start is counted in O(1) when a request meets a fresh instance (``note_cold_start``) and at
scrape time for instances that served none yet, so an instance that lives shorter than a scrape
interval and serves no request is not counted (a start event from the supervisor would fix it).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = ["Histogram", "Metrics", "REQUEST_BUCKETS", "COLD_START_BUCKETS", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
COLD_START_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    """A label value escaped per the text format (backslash, double quote, newline)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _num(value: float) -> str:
    if value == float("inf"):
        return "+Inf"
    return repr(float(value)) if isinstance(value, float) else str(value)


class Histogram:
    """One histogram series. ``bounds``: upper bounds in seconds, ascending (``+Inf`` implied).
    ``counts[i]``: observations in bucket i only (made cumulative when rendered)."""

    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        """Add one observation (seconds)."""
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str, labels: str) -> Iterable[str]:
        """The ``_bucket``/``_sum``/``_count`` lines; ``labels``: ``function="x"`` or ``""``."""
        sep = "," if labels else ""
        running = 0
        for bound, n in zip(self.bounds + (float("inf"),), self.counts):
            running += n
            yield f'{name}_bucket{{{labels}{sep}le="{_num(bound)}"}} {running}'
        braces = f"{{{labels}}}" if labels else ""
        yield f"{name}_sum{braces} {self.sum!r}"
        yield f"{name}_count{braces} {self.count}"


class Metrics:
    """The counters of one ``fnserve start`` process. Loop thread only.

    ``record_request(function, status, seconds)`` per request; ``waiting``: function id →
    requests currently waiting in ``Supervisor.acquire`` (kept by ``observe.ObservedSupervisor``);
    ``note_cold_start(function, pid, ready_ms)`` counts one (O(1)); ``note_instances(status)``
    counts those of ``Supervisor.status()`` not seen before;
    ``render(status, ready)`` → the exposition text.
    """

    def __init__(self) -> None:
        self.requests: dict[tuple[str, int], int] = {}
        self.durations: dict[str, Histogram] = {}
        self.cold_starts: dict[str, int] = {}
        self.cold_durations: dict[str, Histogram] = {}
        self.waiting: dict[str, int] = {}
        self.reloads: dict[str, int] = {"ok": 0, "failed": 0}
        # the direct path (server.direct): client connections passed to instances, handed back, lost
        # with a request in progress (answered 502/504 by the front)
        self.direct: dict[str, int] = {"passed": 0, "handed_back": 0, "lost": 0}
        self.started_at = time.time()
        self._counted: dict[str, set[Any]] = {}  # function id → pids whose cold start is counted

    def record_request(self, function: str, status: int, seconds: float) -> None:
        """Count one finished request (``status`` 0: the client left before any response)."""
        key = (function, status)
        requests = self.requests
        requests[key] = requests.get(key, 0) + 1
        hist = self.durations.get(function)
        if hist is None:
            hist = self.durations[function] = Histogram(REQUEST_BUCKETS)
        hist.observe(seconds)

    def note_cold_start(self, function: str, pid: Any, ready_ms: float | None) -> None:
        """Count the cold start of instance ``pid`` of ``function`` (``ready_ms``: launch → READY,
        ms) unless counted already: O(1), called as a request meets a fresh instance."""
        counted = self._counted.setdefault(function, set())
        if pid in counted or ready_ms is None:
            return
        counted.add(pid)
        self.cold_starts[function] = self.cold_starts.get(function, 0) + 1
        hist = self.cold_durations.get(function)
        if hist is None:
            hist = self.cold_durations[function] = Histogram(COLD_START_BUCKETS)
        hist.observe(float(ready_ms) / 1000.0)

    def note_instances(self, status: Mapping[str, Mapping[str, Any]]) -> None:
        """Count the cold start of every ready instance of ``Supervisor.status()`` not counted
        yet (its ``ready_ms`` goes to the histogram); forget pids that are gone."""
        for fid, info in status.items():
            counted = self._counted.setdefault(fid, set())
            live = set()
            for inst in info.get("instances", ()):
                pid = inst.get("pid")
                live.add(pid)
                self.note_cold_start(fid, pid, inst.get("ready_ms"))
            counted &= live

    def render(self, status: Mapping[str, Mapping[str, Any]], ready: bool) -> str:
        """The whole exposition (text format 0.0.4), ending with a newline. ``status``:
        ``Supervisor.status()`` (also counts new cold starts); ``ready``: readiness now."""
        self.note_instances(status)
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        family("fnserve_requests_total", "counter", "Requests answered, by function and HTTP status.")
        for (fid, code), n in sorted(self.requests.items()):
            out.append(f'fnserve_requests_total{{function="{_escape(fid)}",status="{code}"}} {n}')
        family("fnserve_request_duration_seconds", "histogram", "Time from arrival to the end of the response.")
        for fid, hist in sorted(self.durations.items()):
            out.extend(hist.lines("fnserve_request_duration_seconds", f'function="{_escape(fid)}"'))
        family("fnserve_cold_starts_total", "counter", "Function instances started (launch to ready).")
        for fid, n in sorted(self.cold_starts.items()):
            out.append(f'fnserve_cold_starts_total{{function="{_escape(fid)}"}} {n}')
        family("fnserve_cold_start_duration_seconds", "histogram", "Time from launching an instance to READY.")
        for fid, hist in sorted(self.cold_durations.items()):
            out.extend(hist.lines("fnserve_cold_start_duration_seconds", f'function="{_escape(fid)}"'))
        family("fnserve_instances", "gauge", "Instances per function and state.")
        family_inflight: list[str] = []
        queue: list[str] = []
        for fid, info in sorted(status.items()):
            label = f'function="{_escape(fid)}"'
            states: dict[str, int] = {"ready": 0}
            inflight = 0
            for inst in info.get("instances", ()):
                state = str(inst.get("state", "ready"))
                states[state] = states.get(state, 0) + 1
                inflight += int(inst.get("inflight") or 0)
            if isinstance(info.get("starting"), int):
                states["starting"] = states.get("starting", 0) + info["starting"]
            for state, n in sorted(states.items()):
                out.append(f'fnserve_instances{{{label},state="{_escape(state)}"}} {n}')
            family_inflight.append(f"fnserve_function_inflight{{{label}}} {inflight}")
            queued = info.get("queued")
            depth = queued if isinstance(queued, int) else self.waiting.get(fid, 0)
            queue.append(f"fnserve_queue_depth{{{label}}} {depth}")
        family("fnserve_function_inflight", "gauge", "Requests being served inside the function's instances.")
        out.extend(family_inflight)
        family("fnserve_queue_depth", "gauge", "Requests waiting for an instance of the function.")
        out.extend(queue)
        family("fnserve_function_load_failed", "gauge", "1 while the function's last load failed (it is retried).")
        for fid, info in sorted(status.items()):
            out.append(f'fnserve_function_load_failed{{function="{_escape(fid)}"}} {1 if info.get("load_error") else 0}')
        family("fnserve_load_failures_total", "counter", "Failed loads (import or lifespan startup) per function.")
        for fid, info in sorted(status.items()):
            out.append(f'fnserve_load_failures_total{{function="{_escape(fid)}"}} {int(info.get("load_failures_total") or 0)}')
        family("fnserve_instance_replacements_total", "counter",
               "Instances replaced by fnserve (max_requests, failures, heartbeat, memory, duration) by reason.")
        for fid, info in sorted(status.items()):
            for reason, n in sorted((info.get("replaced") or {}).items()):
                out.append(f'fnserve_instance_replacements_total{{function="{_escape(fid)}",reason="{_escape(reason)}"}} {n}')
        family("fnserve_reloads_total", "counter", "Project reloads (SIGHUP) by result.")
        for result, n in sorted(self.reloads.items()):
            out.append(f'fnserve_reloads_total{{result="{result}"}} {n}')
        family("fnserve_direct_connections_total", "counter",
               "Client connections passed to instances (direct path), handed back to the front, lost with a request.")
        for event, n in sorted(self.direct.items()):
            out.append(f'fnserve_direct_connections_total{{event="{event}"}} {n}')
        family("fnserve_ready", "gauge", "1 when the server is ready for traffic (project loaded, not draining).")
        out.append(f"fnserve_ready {1 if ready else 0}")
        family("process_start_time_seconds", "gauge", "Start time of the process since the unix epoch in seconds.")
        out.append(f"process_start_time_seconds {self.started_at!r}")
        return "\n".join(out) + "\n"


def status_of(supervisor: Any) -> Callable[[], Mapping[str, Mapping[str, Any]]]:
    """A callable returning ``supervisor.status()``, or ``{}`` when it fails (metrics must render)."""

    def read() -> Mapping[str, Mapping[str, Any]]:
        try:
            status: Mapping[str, Mapping[str, Any]] = supervisor.status()
        except Exception:
            return {}
        return status

    return read
