"""The route trie: match a request path to a route by specificity (SPEC §3.2, §3.4).

ONE implementation for both sides: ``fnserve.project.matcher.RouteTable`` (the front) stores its
``Route`` objects here, and the worker's direct server (``runtime.direct``) builds the same trie
from the direct plan's ``routes`` (plain data) to decide whether a request is still its own.
Stdlib only, Python 3.9+.

Each node has a dict of literal children, one ``[param]`` child, and the routes that end there
(exact), consume the rest (catch-all ``[...x]``, optional ``[[...x]]``) or mount a framework app
there. Matching walks the path left to right, trying at each node the literal child, then the
param child, then a catch-all, an optional catch-all and a mount, backtracking when a branch
dead-ends. That order *is* the priority of SPEC §3.2 (literal > ``[param]`` > catch-all, segment
by segment from the left; deeper routes before shorter ones; exact routes before mounts), so the
first full match is the best one. At the end of the path, a route that ends there (exact, then a
mount) beats an optional catch-all matching nothing: ``api/index.py`` keeps ``/api`` next to
``api/[[default]].py``, as on EdgeOne. Cost: proportional to the path's length (plus
backtracking over param branches), independent of the number of routes.
"""

from typing import Dict, Generic, Iterable, List, Optional, Tuple, TypeVar

T = TypeVar("T")

SEGMENT_KINDS = ("literal", "param", "catchall", "optional")


class TrieLeaf(Generic[T]):
    """A route stored in the trie: ``payload`` (opaque: a ``Route``, a plan entry), its parameter
    names in order and the ``root_path`` its app sees (SPEC §3.4). (Not a generic NamedTuple:
    Python < 3.11 refuses those.)"""

    __slots__ = ("payload", "names", "root_path")

    def __init__(self, payload: T, names: Tuple[str, ...], root_path: str) -> None:
        self.payload = payload
        self.names = names
        self.root_path = root_path


class TrieNode(Generic[T]):
    """One trie node (mutated only while the trie is built)."""

    __slots__ = ("literal", "param", "exact", "catchall", "optional", "mount")

    def __init__(self) -> None:
        self.literal: Dict[str, "TrieNode[T]"] = {}
        self.param: Optional["TrieNode[T]"] = None
        self.exact: Optional[TrieLeaf[T]] = None
        self.catchall: Optional[TrieLeaf[T]] = None
        self.optional: Optional[TrieLeaf[T]] = None
        self.mount: Optional[TrieLeaf[T]] = None


def split_path(path: str) -> List[str]:
    """A decoded request path → its segments; the trailing slash is ignored (``/api/users/`` =
    ``/api/users``); ``/`` → ``[]``. Empty segments (``//api``, ``/a//b``) are kept: they match no
    literal and no ``[param]``."""
    trimmed = (path[1:] if path.startswith("/") else path).rstrip("/")
    return trimmed.split("/") if trimmed else []


class RouteTrie(Generic[T]):
    """Routes as ``(segments, mount, payload, root_path)``; ``segments``: ``(kind, value)`` pairs,
    kind one of ``SEGMENT_KINDS`` (catch-alls last). ``insert`` adds one (a later route of the same
    shape replaces an earlier one: callers check duplicates); ``lookup(path)`` → ``(leaf,
    captured values)`` or None."""

    __slots__ = ("root",)

    def __init__(self) -> None:
        self.root: TrieNode[T] = TrieNode()

    def insert(self, segments: Iterable[Tuple[str, str]], mount: bool, payload: T, root_path: str = "") -> None:
        """Add a route. Raises ``ValueError`` for an unknown segment kind."""
        segments = list(segments)
        leaf = TrieLeaf(payload, tuple(value for kind, value in segments if kind != "literal"), root_path)
        node = self.root
        for kind, value in segments:
            if kind == "literal":
                child = node.literal.get(value)
                if child is None:
                    child = node.literal[value] = TrieNode()
                node = child
            elif kind == "param":
                if node.param is None:
                    node.param = TrieNode()
                node = node.param
            elif kind == "catchall" or kind == "optional":  # always last (routes.routes_for checks)
                setattr(node, kind, leaf)
                return
            else:
                raise ValueError("unknown route segment kind %r (expected one of %s)" % (kind, ", ".join(SEGMENT_KINDS)))
        if mount:
            node.mount = leaf
        else:
            node.exact = leaf

    def lookup(self, path: str) -> Optional[Tuple[TrieLeaf[T], Tuple[str, ...]]]:
        """The most specific route for a decoded request path and the values of its parameters
        (in ``leaf.names`` order; a catch-all's is the sub-path joined with ``/``), or None."""
        return walk(self.root, split_path(path), 0, ())


def walk(node: TrieNode[T], parts: List[str], i: int, captured: Tuple[str, ...]) -> Optional[Tuple[TrieLeaf[T], Tuple[str, ...]]]:
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
        found = walk(child, parts, i + 1, captured)
        if found is not None:
            return found
    if node.param is not None and part:
        found = walk(node.param, parts, i + 1, captured + (part,))
        if found is not None:
            return found
    if node.catchall is not None:
        return node.catchall, captured + ("/".join(parts[i:]),)
    if node.optional is not None:
        return node.optional, captured + ("/".join(parts[i:]),)
    if node.mount is not None:
        return node.mount, captured
    return None
