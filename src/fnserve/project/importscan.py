"""The one import scan of the project model (SPEC §2, §7, §8; issue 12 item 2).

A Python file is parsed once with ``ast`` (never imported) and every import statement becomes an
``ImportRef`` that carries what each reader needs: ``module``/``names``/``level`` as written, the
``line``, and where the statement sits — ``optional`` (in the body of a ``try`` whose handlers
catch ``ImportError``), ``fallback`` (in one of those handlers), ``at_load`` (run when the module
is imported: not inside a function body) and ``type_checking`` (under ``if TYPE_CHECKING:``).

What an import means for the project (local or not, which files it runs) is decided by the one
rule of ``importpath``. Readers: ``entrypoints``/``model`` and ``importgraph`` (routes, hot-reload
dependents), ``fnserve.deps.detect`` (third-party requirements), ``fnserve.supervisor.preloads``
(zygote preloads). ``StampCache`` / ``ImportScanner`` spare re-parsing unchanged files.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from .types import Problem

T = TypeVar("T")

#: Handler types that make a ``try`` an import guard (a bare ``except:`` counts too).
IMPORT_GUARDS = frozenset({"ImportError", "ModuleNotFoundError", "Exception", "BaseException"})


@dataclass(frozen=True)
class ImportRef:
    """One imported module. ``module``: dotted name as written (``""`` for ``from . import x``);
    ``names``: what ``from module import a, b`` takes (``*`` left out; may be submodules), empty
    for ``import a.b``; ``level``: leading dots (0 = absolute); ``line``: 1-based; ``optional``:
    in the body of a ``try`` catching ``ImportError``; ``fallback``: in such a ``try``'s handler;
    ``at_load``: runs when the module is imported (False inside a function body);
    ``type_checking``: under ``if TYPE_CHECKING:`` (never runs). ``import a, b`` gives two refs."""

    module: str
    names: tuple[str, ...] = ()
    level: int = 0
    line: int = 0
    optional: bool = False
    fallback: bool = False
    at_load: bool = True
    type_checking: bool = False

    @property
    def top(self) -> str:
        """The top-level name (``google`` for ``google.protobuf``; ``""`` for ``from . import x``)."""
        return self.module.split(".", 1)[0]

    @property
    def guarded(self) -> bool:
        """True when a failure of this import is handled by the module (``optional`` or ``fallback``)."""
        return self.optional or self.fallback


@dataclass(frozen=True)
class FileImports:
    """The imports of one file, in source order; ``error``: why the file could not be parsed
    (syntax error with its line, undecodable or unreadable file), then ``imports`` is empty."""

    file_id: str
    imports: tuple[ImportRef, ...] = ()
    error: Problem | None = None


def parse_source(source: str | bytes, file_id: str) -> ast.Module | Problem:
    """Parse module ``source``; ``file_id`` (project-relative path) names the file in the
    ``Problem`` returned — never raised — for a syntax error (with its line), null bytes or an
    undecodable source."""
    try:
        return ast.parse(source, filename=file_id)
    except SyntaxError as exc:
        return Problem("error", f"syntax error: {exc.msg}", file_id, exc.lineno, "fix the file; other routes keep working")
    except (ValueError, UnicodeDecodeError) as exc:  # null bytes, undecodable source
        return Problem("error", f"cannot parse file: {exc}", file_id)


def read_source(path: Path, file_id: str) -> bytes | Problem:
    """The bytes of ``path``, or a ``Problem`` naming ``file_id`` when it cannot be read."""
    try:
        return path.read_bytes()
    except OSError as exc:
        return Problem("error", f"cannot read file: {exc.strerror}", file_id)


def imports_of(tree: ast.Module) -> tuple[ImportRef, ...]:
    """Every import statement of a parsed module, at any depth, in source order."""
    visitor = _ImportVisitor()
    visitor.visit(tree)
    return tuple(visitor.found)


def scan_imports(path: Path, file_id: str) -> FileImports:
    """Read, parse and scan one file (see ``FileImports``); never raises for bad user code."""
    source = read_source(path, file_id)
    if isinstance(source, Problem):
        return FileImports(file_id, error=source)
    tree = parse_source(source, file_id)
    if isinstance(tree, Problem):
        return FileImports(file_id, error=tree)
    return FileImports(file_id, imports_of(tree))


class StampCache(Generic[T]):
    """Per-file results that stay valid while the file's ``(mtime_ns, size)`` is unchanged, for a
    reader that scans the same files repeatedly (each reload, each function's preloads): only
    what changed is parsed again. ``computed`` counts the results actually computed. Not
    thread-safe; one owner."""

    def __init__(self) -> None:
        self._items: dict[tuple[Path, str], tuple[tuple[int, int], T]] = {}
        self.computed = 0

    def get(self, path: Path, key: str, compute: Callable[[], T]) -> T:
        """The result for ``path`` (``key``: whatever else the result depends on, e.g. the file
        id), from the cache when the file is unchanged, else ``compute()`` (also when the file
        cannot be stat'ed: ``compute`` reports that)."""
        try:
            st = path.stat()
        except OSError:
            self.computed += 1
            return compute()
        stamp = (st.st_mtime_ns, st.st_size)
        hit = self._items.get((path, key))
        if hit is not None and hit[0] == stamp:
            return hit[1]
        self.computed += 1
        result = compute()
        self._items[(path, key)] = (stamp, result)
        return result

    def __len__(self) -> int:
        """How many files are held."""
        return len(self._items)

    def retain(self, paths: Collection[Path]) -> None:
        """Forget every file not in ``paths`` (deleted or no longer scanned)."""
        for item in [k for k in self._items if k[0] not in paths]:
            del self._items[item]


class ImportScanner:
    """``scan_imports`` through a ``StampCache``. ``parses``: files actually parsed."""

    def __init__(self) -> None:
        self.cache: StampCache[FileImports] = StampCache()

    @property
    def parses(self) -> int:
        return self.cache.computed

    def scan(self, path: Path, file_id: str | None = None) -> FileImports:
        """The imports of ``path`` (``file_id`` defaults to ``str(path)``)."""
        fid = str(path) if file_id is None else file_id
        return self.cache.get(path, fid, lambda: scan_imports(path, fid))


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self) -> None:
        self.found: list[ImportRef] = []
        self.optional = False
        self.fallback = False
        self.at_load = True
        self.type_checking = False

    def _add(self, node: ast.stmt, module: str, names: tuple[str, ...] = (), level: int = 0) -> None:
        self.found.append(ImportRef(module, names, level, node.lineno, self.optional, self.fallback,
                                    self.at_load, self.type_checking))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(node, alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        names = tuple(a.name for a in node.names if a.name != "*")
        self._add(node, node.module or "", names, node.level or 0)

    def _in_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        # decorators and defaults run at load; the body only when called
        if not isinstance(node, ast.Lambda):
            for deco in node.decorator_list:
                self.visit(deco)
        self.visit(node.args)
        saved, self.at_load = self.at_load, False
        body: Sequence[ast.AST] = [node.body] if isinstance(node, ast.Lambda) else node.body
        for child in body:
            self.visit(child)
        self.at_load = saved

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _in_function

    def visit_If(self, node: ast.If) -> None:
        self.visit(node.test)
        test = node.test
        negated = isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not)
        typing_only = _is_type_checking(test.operand if isinstance(test, ast.UnaryOp) and negated else test)
        for block, type_only in ((node.body, typing_only and not negated), (node.orelse, typing_only and negated)):
            saved, self.type_checking = self.type_checking, self.type_checking or type_only
            for stmt in block:
                self.visit(stmt)
            self.type_checking = saved

    def _try(self, node: ast.Try) -> None:
        guard = any(_catches_import_error(h.type) for h in node.handlers)
        saved = (self.optional, self.fallback)
        self.optional = self.optional or guard
        for stmt in node.body:
            self.visit(stmt)
        self.optional = saved[0]
        self.fallback = self.fallback or guard
        for handler in node.handlers:
            self.visit(handler)
        self.fallback = saved[1]
        for stmt in [*node.orelse, *node.finalbody]:
            self.visit(stmt)

    visit_Try = _try
    visit_TryStar = _try  # Python 3.11+ ``except*``; the same fields


def _is_type_checking(test: ast.expr) -> bool:
    """``TYPE_CHECKING`` or ``typing.TYPE_CHECKING`` (any module prefix)."""
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _catches_import_error(expr: ast.expr | None) -> bool:
    if expr is None:
        return True
    for item in expr.elts if isinstance(expr, ast.Tuple) else [expr]:
        ident = item.attr if isinstance(item, ast.Attribute) else item.id if isinstance(item, ast.Name) else None
        if ident in IMPORT_GUARDS:
            return True
    return False
