"""What ``fnserve routes`` prints (SPEC §8): the route table, helper modules, problems.

``render_text(project, vercel) -> str`` is for people (aligned plain text, no colour codes, so it
reads the same in a terminal, a log and a test): the routes in priority order, Vercel's ``.py``
aliases (``/api/x.py`` beside ``/api/x``, ``/api/index`` beside ``/api``) folded into one note
line instead of doubling the table, then the ``redirects`` and ``rewrites`` of ``vercel.json`` (or
``edgeone.json``, legacy ``routes`` too) in the order they apply, helper modules and problems.
``to_json(project, vercel) -> dict`` is the same content for machines (``json.dumps``-able;
aliases listed as routes with ``match: "alias"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .model import Project
from .types import EntryKind, Function, Route
from .vercel_types import VercelConfig

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
        for r in project.routes.routes if not r.alias
    ]


def _table(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def _alias_note(project: Project) -> list[str]:
    aliases = [r for r in project.routes.routes if r.alias]
    if not aliases:
        return []
    example = next((r for r in aliases if r.pattern.endswith(".py")), aliases[0])
    index = any(not r.pattern.endswith(".py") for r in aliases)
    return ["", f"note: {len(aliases)} Vercel alias{'es' * (len(aliases) != 1)} not listed: each file also answers at "
            f"its name with .py (e.g. {example.pattern})" + ("; an index.py also at <folder>/index" if index else "")]


def _where(where: str, default: str) -> str:
    """The file of a rule's ``where`` (``"vercel.json: rewrites[0]"`` → ``vercel.json``)."""
    return where.split(":", 1)[0] if where else default


def _conditions(rule: Any) -> str:
    return "  (has/missing conditions)" if getattr(rule, "has", ()) or getattr(rule, "missing", ()) else ""


def _rules(vercel: VercelConfig | None) -> list[str]:
    """The routing rules of ``vercel`` as text sections, in the order the front applies them."""
    if vercel is None:
        return []
    lines: list[str] = []
    if vercel.routes:
        rows = [(f"handle: {r.handle}", "", "", "") if r.handle else
                (r.src or "-", "→", r.dest or "-", str(r.status) if r.status else "") for r in vercel.routes]
        lines += ["", f"Routes ({_where(vercel.routes[0].where, 'vercel.json')}, legacy, applied first):"]
        lines += _table(rows, "  ")
    if vercel.redirects:
        rows = [(r.source.source, "→", r.destination, str(r.status_code) + _conditions(r)) for r in vercel.redirects]
        lines += ["", f"Redirects ({_where(vercel.redirects[0].where, 'vercel.json')}):"] + _table(rows, "  ")
    if vercel.rewrites:
        rewrites = [(r.source.source, "→", r.destination + _conditions(r)) for r in vercel.rewrites]
        lines += ["", f"Rewrites ({_where(vercel.rewrites[0].where, 'vercel.json')}):"] + _table(rewrites, "  ")
    return lines


def render_text(project: Project, vercel: VercelConfig | None = None) -> str:
    """The human-readable report: a header line, the route table in priority order (``.py``
    aliases as one note line), the redirects and rewrites of ``vercel`` (the project's parsed
    ``vercel.json``/``edgeone.json``, ``Config.vercel``; None: not shown), the helper modules
    with the functions that import them, then warnings and errors."""
    lines = [_summary(project), ""]
    rows = _rows(project)
    if rows:
        lines += _table([HEADERS, *rows])
        lines += _alias_note(project)
    else:
        lines.append("(no routes)")
    lines += _rules(vercel)
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
    n_fn, n_routes = len(project.functions), sum(not r.alias for r in project.routes.routes)
    layouts = sorted({f.layout.value for f in project.functions})
    mode = "zero-config app at /" if project.zero_config else f"layout: {', '.join(layouts) or 'none'}"
    return f"{project.root}: {n_routes} route{'s' * (n_routes != 1)}, {n_fn} function{'s' * (n_fn != 1)} ({mode})"


def to_json(project: Project, vercel: VercelConfig | None = None) -> dict[str, Any]:
    """The report as a JSON-able dict: ``root``, ``zero_config``, ``routes`` (priority order:
    ``pattern``, ``methods``, ``kind``, ``file``, ``module``, ``layout``, ``match``), ``functions``,
    ``helpers`` (``file``, ``module``, ``importers``), ``problems`` (``severity``, ``message``,
    ``file``, ``line``, ``hint``), ``valid`` (no problem of severity error); with ``vercel`` also
    ``redirects`` (``source``, ``destination``, ``status``, ``conditional``) and ``rewrites``
    (``source``, ``destination``, ``conditional``), in the order they apply."""
    rules: dict[str, Any] = {} if vercel is None else {
        "redirects": [{"source": r.source.source, "destination": r.destination, "status": r.status_code,
                       "conditional": bool(r.has or r.missing)} for r in vercel.redirects],
        "rewrites": [{"source": r.source.source, "destination": r.destination, "conditional": bool(r.has or r.missing)}
                     for r in vercel.rewrites],
    }
    return rules | {
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
