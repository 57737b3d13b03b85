"""``RouteTable``: match a request path to a route by specificity (SPEC §3.2, §3.4).

Routes are stored in a segment trie, not scanned linearly: each node has a dict of literal
children, one ``[param]`` child, and the routes that end there (exact), consume the rest (catch-all
``[[x]]``/``[...x]``, optional ``[[...x]]``) or mount a framework app there. Matching walks the
path left to right, trying at each node the literal child, then the param child, then a catch-all,
an optional catch-all and a mount, backtracking when a branch dead-ends. That order *is* the
priority of SPEC §3.2 (literal > ``[param]`` > catch-all, segment by segment from the left; deeper
routes before shorter ones; exact routes before mounts), so the first full match is the best one.
At the end of the path, a route that ends there (exact, then a mount) beats an optional
catch-all matching nothing: ``api/index.py`` keeps ``/api`` next to ``api/[[default]].py``, as
on EdgeOne (the project model warns that the catch-all never receives ``/api``).
Cost: proportional to the path's length (plus backtracking over param branches), independent of
the number of routes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

from ..errors import DuplicateRouteError
from .routes import priority_key, shape_key
from .types import Layout, Route, RouteMatch


class _Leaf(NamedTuple):
    """A route stored in the trie with what matching needs precomputed: its parameter names in
    order and the ``root_path`` its app sees (SPEC §3.4)."""

    route: Route
    names: tuple[str, ...]
    root_path: str


class _Node:
    """One trie node (private, mutated only while the table is built)."""

    __slots__ = ("literal", "param", "exact", "catchall", "optional", "mount")

    def __init__(self) -> None:
        self.literal: dict[str, _Node] = {}
        self.param: _Node | None = None
        self.exact: _Leaf | None = None
        self.catchall: _Leaf | None = None
        self.optional: _Leaf | None = None
        self.mount: _Leaf | None = None


def split_path(path: str) -> list[str]:
    """A decoded request path → its segments; the trailing slash is ignored (``/api/users/`` =
    ``/api/users``); ``/`` → ``[]``. Empty segments (``//api``, ``/a//b``) are kept: they match no
    literal and no ``[param]``."""
    trimmed = (path[1:] if path.startswith("/") else path).rstrip("/")
    return trimmed.split("/") if trimmed else []


class RouteTable:
    """The routes of a project, matched by specificity.

    ``RouteTable(routes)`` raises ``DuplicateRouteError`` when two routes have the same shape
    (``/api/users/[id]`` and ``/api/users/[slug]`` are the same route); an alias (Vercel's
    ``/api/x.py``, ``/api/index``) that has the shape of another route is dropped instead: the
    file that names that path itself wins. ``routes``: all routes in priority order.
    ``match(path)``: ``RouteMatch`` or None. Immutable once built.
    """

    def __init__(self, routes: Iterable[Route]) -> None:
        seen: dict[tuple[tuple[str, str], ...], Route] = {}
        self._root = _Node()
        for route in sorted(routes, key=lambda r: r.alias):  # stable: real routes first
            key = shape_key(route)
            other = seen.get(key)
            if other is not None:
                if route.alias:
                    continue
                raise DuplicateRouteError(other.pattern, (other.function.id, route.function.id))
            seen[key] = route
            self._insert(route)
        self._routes = tuple(sorted(seen.values(), key=lambda r: (priority_key(r), r.pattern)))

    @property
    def routes(self) -> tuple[Route, ...]:
        """Every route, highest priority first."""
        return self._routes

    def __len__(self) -> int:
        return len(self._routes)

    def __iter__(self) -> Iterator[Route]:
        return iter(self._routes)

    def _insert(self, route: Route) -> None:
        function = route.function
        framework = function.entry is not None and function.entry.kind.is_framework
        root_path = route.static_prefix if framework and function.layout is Layout.EDGEONE else ""
        leaf = _Leaf(route, tuple(seg.value for seg in route.segments if seg.kind != "literal"), root_path)
        node = self._root
        segments = route.segments
        for seg in segments:
            if seg.kind == "literal":
                node = node.literal.setdefault(seg.value, _Node())
            elif seg.kind == "param":
                if node.param is None:
                    node.param = _Node()
                node = node.param
            else:  # catch-alls are always last (routes.routes_for checks)
                setattr(node, seg.kind, leaf)
                return
        if route.mount:
            node.mount = leaf
        else:
            node.exact = leaf

    def match(self, path: str) -> RouteMatch | None:
        """Match a decoded request path (ASGI ``scope["path"]``). Returns the ``RouteMatch`` of the
        most specific route, or None (404). ``params`` maps each parameter name to its value (a
        catch-all's is the sub-path joined with ``/``); ``root_path`` is the static prefix for an
        EdgeOne-layout framework app, else ``""``; ``path`` is ``path`` unchanged."""
        parts = split_path(path)
        found = _walk(self._root, parts, 0, ())
        if found is None:
            return None
        leaf, captured = found
        return RouteMatch(leaf.route, dict(zip(leaf.names, captured)), leaf.root_path, path)


def _walk(node: _Node, parts: list[str], i: int, captured: tuple[str, ...]) -> tuple[_Leaf, tuple[str, ...]] | None:
    """Depth-first search in priority order; recursion depth is bounded by the trie's depth."""
    if i == len(parts):
        if node.exact is not None:
            return node.exact, captured
        if node.mount is not None:
            return node.mount, captured
        if node.optional is not None:
            return node.optional, captured + ("",)
        return None
    part = parts[i]
    child = node.literal.get(part)
    if child is not None:
        found = _walk(child, parts, i + 1, captured)
        if found is not None:
            return found
    if node.param is not None and part:
        found = _walk(node.param, parts, i + 1, captured + (part,))
        if found is not None:
            return found
    if node.catchall is not None:
        return node.catchall, captured + ("/".join(parts[i:]),)
    if node.optional is not None:
        return node.optional, captured + ("/".join(parts[i:]),)
    if node.mount is not None:
        return node.mount, captured
    return None
