"""What ``fnserve routes`` prints (SPEC §8): the route table, helper modules, problems.

``render_text(project) -> str`` is for people (aligned plain text, no colour codes, so it reads
the same in a terminal, a log and a test); ``to_json(project) -> dict`` is the same content for
machines (``json.dumps``-able).
"""

from __future__ import annotations

from typing import Any

from .model import Project
from .types import EntryKind, Function, Route

HEADERS = ("ROUTE", "METHODS", "KIND", "FILE", "MATCH")


def methods_of(function: Function) -> tuple[str, ...]:
    """HTTP methods a function answers, as far as static analysis tells (SPEC §3.5): a handler's
    ``do_X`` plus ``HEAD`` (served by ``do_GET``) and ``OPTIONS`` (answered with ``Allow``);
    ``("*",)`` for apps and lambda handlers; ``()`` for a file that failed to parse."""
    entry = function.entry
    if entry is None:
        return ()
    if entry.kind is not EntryKind.HANDLER:
        return ("*",)
    if not entry.methods:
        return ("?",)  # re-exported class: methods are known at load time
    found = set(entry.methods)
    if "GET" in found:
        found.add("HEAD")
    found.add("OPTIONS")
    order = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return tuple(sorted(found, key=lambda m: (order.index(m) if m in order else len(order), m)))


def kind_of(function: Function) -> str:
    """``handler``, ``app``, ``application``, ``lambda``, or ``error`` for an unparsable file."""
    return function.entry.kind.value if function.entry is not None else "error"


def match_of(route: Route) -> str:
    """``exact``, ``mount`` (receives sub-paths too) or ``alias`` (Vercel's ``/api/x.py`` form)."""
    return "alias" if route.alias else "mount" if route.mount else "exact"


def _rows(project: Project) -> list[tuple[str, ...]]:
    return [
        (r.pattern, ",".join(methods_of(r.function)) or "-", kind_of(r.function), r.function.id, match_of(r))
        for r in project.routes.routes
    ]


def render_text(project: Project) -> str:
    """The human-readable report: a header line, the route table in priority order, the helper
    modules with the functions that import them, then warnings and errors."""
    lines = [_summary(project), ""]
    rows = _rows(project)
    if rows:
        widths = [max(len(row[i]) for row in [HEADERS, *rows]) for i in range(len(HEADERS))]
        for row in [HEADERS, *rows]:
            lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    else:
        lines.append("(no routes)")
    if project.helpers:
        lines += ["", "Helper modules (importable, never routes):"]
        width = max(len(h.id) for h in project.helpers)
        for h in project.helpers:
            used = f"used by {', '.join(h.importers)}" if h.importers else "not imported by any function"
            lines.append(f"  {h.id.ljust(width)}  {used}")
    warnings = [p for p in project.problems if p.severity != "error"]
    errors = [p for p in project.problems if p.severity == "error"]
    for title, items in (("Warnings", warnings), ("Errors", errors)):
        if items:
            lines += ["", f"{title}:"] + [f"  {p}" for p in items]
    return "\n".join(lines) + "\n"


def _summary(project: Project) -> str:
    n_fn, n_routes = len(project.functions), len(project.routes)
    layouts = sorted({f.layout.value for f in project.functions})
    mode = "zero-config app at /" if project.zero_config else f"layout: {', '.join(layouts) or 'none'}"
    return f"{project.root}: {n_routes} route{'s' * (n_routes != 1)}, {n_fn} function{'s' * (n_fn != 1)} ({mode})"


def to_json(project: Project) -> dict[str, Any]:
    """The report as a JSON-able dict: ``root``, ``zero_config``, ``routes`` (priority order:
    ``pattern``, ``methods``, ``kind``, ``file``, ``module``, ``layout``, ``match``), ``functions``,
    ``helpers`` (``file``, ``module``, ``importers``), ``problems`` (``severity``, ``message``,
    ``file``, ``line``, ``hint``), ``valid`` (no problem of severity error)."""
    return {
        "root": str(project.root),
        "zero_config": project.zero_config,
        "valid": not project.has_errors,
        "routes": [
            {
                "pattern": r.pattern,
                "methods": list(methods_of(r.function)),
                "kind": kind_of(r.function),
                "file": r.function.id,
                "module": r.function.module,
                "layout": r.function.layout.value,
                "match": match_of(r),
            }
            for r in project.routes.routes
        ],
        "functions": [
            {
                "id": f.id,
                "module": f.module,
                "layout": f.layout.value,
                "kind": kind_of(f),
                "attr": f.entry.attr if f.entry else None,
                "import_roots": [str(p) for p in f.import_roots],
                "error": str(f.error) if f.error else None,
            }
            for f in project.functions
        ],
        "helpers": [{"file": h.id, "module": h.module, "importers": list(h.importers)} for h in project.helpers],
        "problems": [
            {"severity": p.severity, "message": p.message, "file": p.file, "line": p.line, "hint": p.hint}
            for p in project.problems
        ],
    }
