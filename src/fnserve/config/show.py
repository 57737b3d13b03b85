"""``fnserve config``: the effective configuration and where each value came from (SPEC §5).

``render_text(config) -> str`` (aligned tables) and ``to_json(config) -> dict`` show every
setting with its value and source, the per-function limit rules, a summary of the routing rules
(``rewrites``, ``redirects``, ``headers``, legacy ``routes``), and the NAMES of the variables a
function gets — never their values, which may be secrets.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fnserve.config.effective import SETTINGS, Config

__all__ = ["render_text", "to_json"]


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ", ".join(map(str, value)) or "(none)"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _table(rows: Sequence[tuple[str, ...]], indent: str = "  ") -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]


def _rules(config: Config) -> list[dict[str, Any]]:
    v = config.vercel
    out: list[dict[str, Any]] = []
    for r in v.redirects:
        out.append({"type": "redirect", "source": str(r.source), "destination": r.destination,
                    "status": r.status_code, "where": r.where})
    for w in v.rewrites:
        out.append({"type": "rewrite", "source": str(w.source), "destination": w.destination, "where": w.where})
    for h in v.headers:
        out.append({"type": "headers", "source": str(h.source), "headers": [k for k, _ in h.headers],
                    "where": h.where})
    for route in v.routes:
        item: dict[str, Any] = {"type": "route", "where": route.where}
        if route.handle:
            item["handle"] = route.handle
        else:
            item.update({"src": route.src, "dest": route.dest, "status": route.status,
                         "methods": list(route.methods) if route.methods else None, "continue": route.continue_})
        out.append(item)
    return out


def _function_rules(config: Config) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for fn in config.vercel.functions:
        values = {k: getattr(fn, k) for k in ("max_duration", "memory", "include_files", "exclude_files")}
        out.append({"glob": fn.glob, "where": fn.where, "values": {k: v for k, v in values.items() if v is not None}})
    for rule in config.function_rules:
        out.append({"glob": rule.glob, "where": rule.where, "values": dict(rule.values)})
    return out


def _limits(config: Config, functions: Sequence[tuple[str, bool | None]]) -> list[dict[str, Any]]:
    out = []
    for function_id, asgi in functions:
        sync = config.limits_for(function_id)
        item: dict[str, Any] = {"function": function_id, "max_duration": sync.max_duration, "memory": sync.memory,
                                "concurrency": sync.concurrency, "min_instances": sync.min_instances,
                                "max_instances": sync.max_instances, "idle_timeout": sync.idle_timeout}
        if asgi is None:  # WSGI or ASGI is decided at load time (SPEC §2.1): show both
            item["concurrency_asgi"] = config.limits_for(function_id, asgi=True).concurrency
        out.append(item)
    return out


def to_json(config: Config, functions: Sequence[tuple[str, bool | None]] = ()) -> dict[str, Any]:
    """A JSON-able dict: ``project_dir``, ``mode``, ``settings`` (name → value, source, env,
    flag, unit), ``functions`` (limit rules), ``limits`` (the effective limits of each of
    ``functions``: ``(function id, asgi)`` pairs, asgi None when only the load can tell),
    ``routing`` (rules, cleanUrls, trailingSlash), ``function_env`` (names only), ``files``,
    ``build_command``, ``warnings``."""
    v = config.vercel
    return {
        "project_dir": str(config.project_dir),
        "mode": config.mode,
        "settings": {
            s.name: {"value": getattr(config, s.name), "source": config.sources[s.name], "env": s.env,
                     "flag": s.flag, "unit": s.unit or None}
            for s in SETTINGS
        },
        "functions": _function_rules(config),
        "limits": _limits(config, functions),
        "routing": {"rules": _rules(config), "clean_urls": v.clean_urls, "trailing_slash": v.trailing_slash},
        "function_env": sorted(config.env_vars),
        "files": [str(p.relative_to(config.project_dir)) for p in config.files],
        "build_command": config.build_command,
        "install_command": v.install_command,
        "warnings": list(config.warnings),
    }


def render_text(config: Config, functions: Sequence[tuple[str, bool | None]] = ()) -> str:
    """The human report: aligned tables, one section per topic (``functions`` as in ``to_json``)."""
    data = to_json(config, functions)
    lines = [f"fnserve config for {data['project_dir']} (mode: {config.mode})"]
    lines.append("files: " + (", ".join(data["files"]) if data["files"] else "(none: defaults only)"))
    lines += ["", "Settings"]
    rows: list[tuple[str, ...]] = [("SETTING", "VALUE", "SOURCE", "ENV")]
    for s in SETTINGS:
        value = _show(getattr(config, s.name)) + (f" {s.unit}" if s.unit and getattr(config, s.name) is not None else "")
        rows.append((s.file_key, value, config.sources[s.name], s.env))
    lines += _table(rows)
    if data["functions"]:
        lines += ["", "Per-function limits (most specific glob wins; flags and FNSERVE_* beat them)"]
        rows = [("GLOB", "SETTINGS", "FROM")]
        for fn in data["functions"]:
            shown = ", ".join(f"{k.replace('_', '-')}={_show(v)}" for k, v in fn["values"].items()) or "(nothing)"
            rows.append((fn["glob"], shown, fn["where"].split(":")[0]))
        lines += _table(rows)
    if data["limits"]:
        lines += ["", "Effective limits per function"]
        rows = [("FUNCTION", "MAX-DURATION", "MEMORY", "CONCURRENCY", "INSTANCES", "IDLE-TIMEOUT")]
        for item in data["limits"]:
            conc = str(item["concurrency"])
            if "concurrency_asgi" in item:
                conc += f" (asgi: {item['concurrency_asgi']})"
            rows.append((item["function"], f"{_show(item['max_duration'])} s", f"{item['memory']} MB", conc,
                         f"{item['min_instances']}-{item['max_instances']}", f"{_show(item['idle_timeout'])} s"))
        lines += _table(rows)
    routing = data["routing"]
    lines += ["", "Routing rules" + ("" if routing["rules"] else ": none")]
    if routing["rules"]:
        rows = [("TYPE", "SOURCE", "DESTINATION", "WHERE")]
        for r in routing["rules"]:
            if r["type"] == "redirect":
                rows.append(("redirect", r["source"], f"{r['destination']} ({r['status']})", r["where"]))
            elif r["type"] == "rewrite":
                rows.append(("rewrite", r["source"], r["destination"], r["where"]))
            elif r["type"] == "headers":
                rows.append(("headers", r["source"], ", ".join(r["headers"]), r["where"]))
            elif "handle" in r:
                rows.append(("route", f"(handle: {r['handle']})", "", r["where"]))
            else:
                dest = r["dest"] or (f"status {r['status']}" if r["status"] else "")
                rows.append(("route", r["src"], dest, r["where"]))
        lines += _table(rows)
    ts = routing["trailing_slash"]
    lines.append(f"  cleanUrls: {_show(routing['clean_urls'])}; trailingSlash: {'(unset)' if ts is None else _show(ts)}")
    if data["build_command"] or data["install_command"]:
        lines.append(f"  buildCommand: {_show(data['build_command'])}; installCommand: {_show(data['install_command'])}")
    names = data["function_env"]
    lines += ["", f"Function environment ({len(names)} variable{'s' if len(names) != 1 else ''}; values hidden)"]
    if names:
        lines.append("  " + ", ".join(names))
    if data["warnings"]:
        lines += ["", "Warnings"] + [f"  - {w}" for w in data["warnings"]]
    return "\n".join(lines)
