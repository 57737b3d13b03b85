"""The dashboard's state document (``GET /_fnserve/api/state``): routes, functions, instances,
latency, dependencies — built from the project model, ``Supervisor.status()`` and the feed.

``build_state(source, feed)`` returns (JSON-able)::

    {"server": {"command", "root", "pid", "uptime_s", "time"},
     "problem": str | null,                       # a project-wide problem (bad config, duplicate route)
     "routes": [{"pattern", "methods": [str], "kind", "file", "match"}],   # priority order
     "functions": [{"id", "kind", "route", "state", "detail", "error": {"message", "traceback",
                    "hint"} | null, "last_event": {"t", "level", "msg"} | null, "spawns",
                    "cold_starts", "queued",
                    "instances": [{"pid", "state", "inflight", "ready_ms", "rss_mb", "uptime_s"}],
                    "latency": [[t, p50_ms, p95_ms, count]]}],
     "deps": {"state", "installing": [str], "error": str | null, "python": str | null,
              "requirements": [str], "lines": [message events]} | null}

The events themselves (requests, output, messages) come on the SSE stream, kept ones first.

A function's ``state`` (``function_state``): ``load error`` (the file does not parse, or its worker
failed to import it: ``error`` has the traceback), ``installing`` / ``dependencies failed`` (dev holds
it while its env is built), ``ready`` (an instance is ready), ``loading`` (one is starting),
``crashed`` (no instance, and the supervisor's last word about it was a warning or an error: a worker
that died, was killed for its time or memory limit...), else ``not started``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fnserve.project.report import kind_of, match_of, methods_of
from fnserve.server.dashboard.feed import DashboardFeed

if TYPE_CHECKING:
    from fnserve.server.devdeps import DepsGate, DevDeps

__all__ = ["StateSource", "build_state", "deps_panel", "dev_holds", "function_state", "process_facts"]

_STARTED = time.time()


@dataclass
class StateSource:
    """Where the state comes from, as callables read at each request (the dev or start server's
    current values). ``project``: the ``Project`` (None while it cannot be loaded); ``status``:
    ``Supervisor.status()``; ``load_error``: function id → the remembered ``LoadError`` or None;
    ``problem``: a project-wide problem or None; ``holds``: function id → ``(installing names,
    error text or None)`` for functions dev holds while their env is built (``"*"``: all);
    ``deps``: the dependency panel (``deps_panel``) or None (start has none); ``command``:
    ``"dev"`` or ``"start"``."""

    project: Callable[[], Any]
    status: Callable[[], Mapping[str, Mapping[str, Any]]]
    load_error: Callable[[str], Any] = lambda _fid: None
    problem: Callable[[], str | None] = lambda: None
    holds: Callable[[], Mapping[str, tuple[tuple[str, ...], str | None]]] = lambda: {}
    deps: Callable[[], dict[str, Any] | None] = lambda: None
    command: str = "dev"
    _routes: tuple[Any, list[dict[str, Any]]] | None = field(default=None, repr=False)

    def routes(self, project: Any) -> list[dict[str, Any]]:
        """The route table of ``project`` (the rows of ``fnserve routes``), cached per project."""
        if project is None:
            return []
        if self._routes is None or self._routes[0] is not project:
            rows = [{"pattern": r.pattern, "methods": list(methods_of(r.function)), "kind": kind_of(r.function),
                     "file": r.function.id, "match": match_of(r)} for r in project.routes.routes]
            self._routes = (project, rows)
        return self._routes[1]


def process_facts(pid: int | None, now: float | None = None) -> tuple[float | None, float | None]:
    """``(RSS in MB, uptime in s)`` of process ``pid`` from ``/proc`` (Linux); ``(None, None)``
    when it is gone or ``/proc`` is not there."""
    if not pid:
        return None, None
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            rss_pages = int(f.read().split()[1])
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open("/proc/uptime", "rb") as f:
            boot_uptime = float(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None, None
    rss = rss_pages * os.sysconf("SC_PAGE_SIZE") / 1048576.0
    try:  # field 22 (starttime, clock ticks after boot); fields after the ")" of the command name
        ticks = int(stat[stat.rindex(b")") + 2:].split()[19])
        uptime: float | None = max(0.0, boot_uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (ValueError, IndexError):
        uptime = None
    return round(rss, 1), (round(uptime, 1) if uptime is not None else None)


def function_state(info: Mapping[str, Any] | None, *, static_error: str | None = None,
                   load_error: Any = None, hold: tuple[tuple[str, ...], str | None] | None = None,
                   last_event: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """``(state, detail)`` of one function (module docstring). ``info``: its entry of
    ``Supervisor.status()`` (None: the supervisor does not know it yet); ``static_error``: the
    project model's error for its file; ``load_error``: the supervisor's remembered ``LoadError``;
    ``hold``: dev's dependency hold; ``last_event``: the feed's last supervisor event about it."""
    if static_error:
        return "load error", static_error
    if hold is not None:
        names, error = hold
        if error:
            return "dependencies failed", error
        return "installing", "installing " + (", ".join(names) if names else "dependencies")
    if load_error is not None or (info is not None and info.get("load_error")):
        message = getattr(load_error, "message", None) or (info or {}).get("load_error") or str(load_error)
        return "load error", str(message)
    if info is None:
        return "not started", "starts with its first request"
    instances = info.get("instances") or []
    ready = [i for i in instances if i.get("state") == "ready"]
    if ready:
        return "ready", f"{len(ready)} instance{'s' * (len(ready) != 1)} ready"
    if info.get("starting") or any(i.get("state") == "starting" for i in instances):
        return "loading", "an instance is starting"
    if last_event is not None and last_event.get("level") in ("warning", "error"):
        return "crashed", str(last_event.get("msg", ""))
    if info.get("spawns"):
        return "not started", "no instance now; the next request starts one"
    return "not started", "starts with its first request"


def _error_of(load_error: Any, static_error: str | None) -> dict[str, Any] | None:
    if static_error:
        return {"message": static_error, "traceback": "", "hint": None}
    if load_error is None:
        return None
    return {"message": str(getattr(load_error, "message", load_error)),
            "traceback": str(getattr(load_error, "traceback", "") or ""),
            "hint": getattr(load_error, "hint", None)}


def build_state(source: StateSource, feed: DashboardFeed, *, now: float | None = None) -> dict[str, Any]:
    """The state document (module docstring) for one ``GET /_fnserve/api/state``."""
    now = feed.clock() if now is None else now
    project = source.project()
    status = source.status()
    holds = source.holds()
    everyone = holds.get("*")
    routes = source.routes(project)
    route_of: dict[str, str] = {}
    for row in routes:
        route_of.setdefault(row["file"], row["pattern"])
    functions = []
    for function in (project.functions if project is not None else ()):
        fid = function.id
        info = status.get(fid)
        static_error = str(function.error) if function.error is not None else None
        load_error = source.load_error(fid) if info is not None else None
        event = feed.function_events.get(fid)
        state, detail = function_state(info, static_error=static_error, load_error=load_error,
                                       hold=holds.get(fid) or everyone, last_event=event)
        instances = []
        for inst in (info or {}).get("instances") or []:
            rss, uptime = process_facts(inst.get("pid"))
            instances.append({"pid": inst.get("pid"), "state": inst.get("state"), "inflight": inst.get("inflight", 0),
                              "ready_ms": _round(inst.get("ready_ms")), "rss_mb": rss, "uptime_s": uptime})
        functions.append({
            "id": fid,
            "kind": function.entry.kind.value if function.entry is not None else "error",
            "route": route_of.get(fid),
            "state": state,
            "detail": detail,
            "error": _error_of(load_error, static_error) if state == "load error" else None,
            "last_event": event,
            "spawns": (info or {}).get("spawns", 0),
            "cold_starts": (info or {}).get("cold_starts", 0),
            "queued": (info or {}).get("queued", 0),
            "instances": instances,
            "latency": feed.latency(fid, now),
        })
    deps = source.deps()
    if deps is not None:
        deps = {**deps, "lines": [m for m in feed.messages if m["msg"].startswith("deps:")][-50:]}
    return {
        "server": {"command": source.command, "root": str(project.root) if project is not None else None,
                   "pid": os.getpid(), "uptime_s": round(time.time() - _STARTED, 1), "time": now},
        "problem": source.problem(),
        "routes": routes,
        "functions": functions,
        "deps": deps,
    }


def _round(value: Any) -> float | None:
    return round(float(value), 1) if isinstance(value, (int, float)) else None


def deps_panel(deps: DevDeps, gate: DepsGate) -> dict[str, Any]:
    """The dependency panel of ``fnserve dev`` from its ``DevDeps`` and ``DepsGate``:
    ``{"state": "off" | "installing" | "failed" | "ready" | "none", "installing": [names],
    "error": str | None, "python": str | None, "requirements": [str]}``."""
    everyone = gate.everyone
    held = list(gate.held.values())
    installing = sorted({n for h in [everyone, *held] if h is not None for n in h.installing})
    errors = [h.error for h in [everyone, *held] if h is not None and h.error is not None]
    env = deps.env
    if not deps.install:
        state = "off"
    elif errors:
        state = "failed"
    elif everyone is not None or held or deps.installing:
        state = "installing"
    elif env is not None:
        state = "ready"
    else:
        state = "none"
    return {
        "state": state,
        "installing": installing,
        "error": str(errors[0]) if errors else None,
        "python": str(env.python) if env is not None else None,
        "requirements": list(env.requirements) if env is not None else [],
    }


def dev_holds(gate: DepsGate) -> dict[str, tuple[tuple[str, ...], str | None]]:
    """``StateSource.holds`` of ``fnserve dev`` from its ``DepsGate`` (``"*"``: every function)."""
    out = {fid: (hold.installing, str(hold.error) if hold.error else None) for fid, hold in gate.held.items()}
    if gate.everyone is not None:
        out["*"] = (gate.everyone.installing, str(gate.everyone.error) if gate.everyone.error else None)
    return out
