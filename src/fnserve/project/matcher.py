"""``RouteTable``: match a request path to a route by specificity (SPEC §3.2, §3.4).

The trie itself is ``fnserve.runtime.routetrie`` (one implementation: the worker's direct server
walks the same one). Routes are stored in a segment trie, not scanned linearly: each node has a dict of literal
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

from ..errors import DuplicateRouteError
from ..runtime.routetrie import RouteTrie, split_path
from .routes import priority_key, shape_key
from .types import Layout, Route, RouteMatch


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
        self._trie: RouteTrie[Route] = RouteTrie()
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
        self._trie.insert([(seg.kind, seg.value) for seg in route.segments], route.mount, route, root_path)

    def match(self, path: str) -> RouteMatch | None:
        """Match a decoded request path (ASGI ``scope["path"]``). Returns the ``RouteMatch`` of the
        most specific route, or None (404). ``params`` maps each parameter name to its value (a
        catch-all's is the sub-path joined with ``/``); ``root_path`` is the static prefix for an
        EdgeOne-layout framework app, else ``""``; ``path`` is ``path`` unchanged."""
        found = self._trie.lookup(path)
        if found is None:
            return None
        leaf, captured = found
        return RouteMatch(leaf.payload, dict(zip(leaf.names, captured)), leaf.root_path, path)


__all__ = ["RouteTable", "split_path"]
