"""Static entrypoint detection (SPEC §2): parse a file with ``ast``, never import it.

``scan_file(path, file_id)`` returns a ``ModuleScan``: the top-level names the module binds, the
entry it exports (with the precedence of SPEC §2), the HTTP methods of a handler class, and the
imports it makes (``importscan.ImportRef``, from the same parse: the one import scan that the
hot-reload graph, deps and zygote preloads read). A syntax error is not raised: it is returned as
``ModuleScan.error``, a ``Problem`` with file and line.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path
from typing import cast

from .importscan import ImportRef, imports_of, parse_source, read_source
from .types import Entry, EntryKind, Problem

#: Top-level names that make a file an entrypoint, in the order of SPEC §2's precedence.
ENTRY_NAMES = ("app", "application", "handler", "Handler")


@dataclass(frozen=True)
class Binding:
    """How a top-level name is bound: ``how`` is "class", "def", "call" (``x = f(...)``),
    "import" or "other" (any other assignment); ``line`` is 1-based."""

    name: str
    how: str
    line: int
    node: ast.AST | None = None


@dataclass(frozen=True)
class ModuleScan:
    """What one ``.py`` file holds, found statically. ``names``: top-level bound names in source
    order; ``entry``: the exported entry or None; ``error``: a syntax or decoding error or None
    (then everything else is empty)."""

    names: tuple[str, ...] = ()
    entry: Entry | None = None
    imports: tuple[ImportRef, ...] = ()
    error: Problem | None = None


def scan_file(path: Path, file_id: str) -> ModuleScan:
    """Read and scan ``path``; ``file_id`` is the project-relative name used in problems."""
    source = read_source(path, file_id)
    if isinstance(source, Problem):
        return ModuleScan(error=source)
    return scan_source(source, file_id)


def scan_source(source: str | bytes, file_id: str) -> ModuleScan:
    """Scan module ``source``: one parse gives the bindings, the entry and the imports
    (``importscan.imports_of``). Returns a ``ModuleScan``; never raises for bad user code."""
    tree = parse_source(source, file_id)
    if isinstance(tree, Problem):
        return ModuleScan(error=tree)
    bindings = _top_level_bindings(tree.body)
    return ModuleScan(
        names=tuple(dict.fromkeys(b.name for b in bindings)),
        entry=_pick_entry(bindings),
        imports=imports_of(tree),
    )


def entry_for_attr(scan: ModuleScan, attr: str) -> Entry | None:
    """The entry for a configured ``module:attr`` (SPEC §3.3 step 1/4): None when the module does
    not bind ``attr``. ``app``/``application`` keep their kind, ``handler``/``Handler`` are detected
    as usual, any other name is a framework app (WSGI or ASGI, decided at load)."""
    if scan.entry is not None and scan.entry.attr == attr:
        return scan.entry
    if attr not in scan.names:
        return None
    kind = EntryKind.APPLICATION if attr == "application" else EntryKind.APP
    return Entry(kind, attr, 0)


def _top_level_bindings(body: list[ast.stmt]) -> list[Binding]:
    """Names bound at module level, looking inside top-level ``if``/``try``/``with`` blocks."""
    out: list[Binding] = []
    for node in body:
        if isinstance(node, ast.ClassDef):
            out.append(Binding(node.name, "class", node.lineno, node))
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            out.append(Binding(node.name, "def", node.lineno, node))
        elif isinstance(node, ast.Assign):
            how = _value_kind(node.value)
            for target in node.targets:
                out.extend(Binding(n, how, node.lineno, node.value) for n in _target_names(target))
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)) and node.value is not None:
            out.extend(Binding(n, _value_kind(node.value), node.lineno, node.value) for n in _target_names(node.target))
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    continue
                name = alias.asname or alias.name.split(".")[0]
                out.append(Binding(name, "import", node.lineno))
        elif isinstance(node, ast.If):
            out += _top_level_bindings(node.body) + _top_level_bindings(node.orelse)
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            tried = cast(ast.Try, node)  # ``except*`` (ast.TryStar, 3.11+) has the same fields
            blocks = [tried.body, tried.orelse, tried.finalbody] + [h.body for h in tried.handlers]
            for block in blocks:
                out += _top_level_bindings(block)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            out += _top_level_bindings(node.body)
    return out


def _target_names(target: ast.expr) -> list[str]:
    """Names bound by an assignment target, through tuple/list unpacking (``app, rt = ...``)."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for elt in target.elts for n in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []


def _value_kind(value: ast.expr) -> str:
    if isinstance(value, ast.Call):
        return "call"
    if isinstance(value, ast.Lambda):
        return "def"
    if isinstance(value, (ast.Name, ast.Attribute)):
        return "alias"
    return "other"


def _pick_entry(bindings: list[Binding]) -> Entry | None:
    """Apply SPEC §2's precedence: ``app``, ``application``, ``handler`` class, ``Handler`` class,
    lambda ``handler``. The last binding of a name wins, as at run time."""
    last: dict[str, Binding] = {b.name: b for b in bindings}
    classes = {b.name: b.node for b in bindings if b.how == "class"}
    if "app" in last:
        return Entry(EntryKind.APP, "app", last["app"].line)
    if "application" in last:
        return Entry(EntryKind.APPLICATION, "application", last["application"].line)
    for name in ("handler", "Handler"):
        b = last.get(name)
        if b is None:
            continue
        target = b.node
        if b.how == "alias" and isinstance(target, ast.Name) and target.id in classes:
            target = classes[target.id]  # handler = MyHandler
        if isinstance(target, ast.ClassDef):
            return Entry(EntryKind.HANDLER, name, b.line, _handler_methods(target, classes))
        if b.how == "import" or b.how == "alias":
            # re-exported from elsewhere: a class is the common case; the loader checks it (SPEC §2)
            return Entry(EntryKind.HANDLER, name, b.line)
    b = last.get("handler")
    if b is not None and b.how in ("def", "call", "other"):
        return Entry(EntryKind.LAMBDA, "handler", b.line)
    return None


def _handler_methods(cls: ast.ClassDef, classes: dict[str, ast.AST | None], depth: int = 0) -> tuple[str, ...]:
    """HTTP methods of the ``do_X`` a handler class defines, including those of base classes
    defined in the same file. Sorted, upper case."""
    found: set[str] = set()
    for node in cls.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("do_"):
            found.add(node.name[3:])
        elif isinstance(node, ast.Assign):
            for target in node.targets:
                found.update(n[3:] for n in _target_names(target) if n.startswith("do_"))
    if depth < 8:
        for base in cls.bases:
            parent = classes.get(base.id) if isinstance(base, ast.Name) else None
            if isinstance(parent, ast.ClassDef) and parent is not cls:
                found.update(_handler_methods(parent, classes, depth + 1))
    return tuple(sorted(m for m in found if m and m.isupper()))
