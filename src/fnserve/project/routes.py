"""From files to routes (SPEC §3.1).

- Vercel layout: paths relative to the project root (``api/hello.py`` → ``/api/hello``, plus the
  ``/api/hello.py`` alias Vercel also serves); EdgeOne layout: relative to ``cloud-functions/``.
- ``index.py`` names its folder (Vercel: it also answers ``<folder>/index`` and
  ``<folder>/index.py``, as aliases); ``[x]`` one segment, ``[...x]`` one or more, ``[[...x]]``
  and EdgeOne's ``[[x]]`` zero or more (``api/[[default]].py`` answers ``/api``), in file and
  folder names.
- A framework app (``app``/``application``) at a static route is a **mount** (SPEC §3.4); in the
  EdgeOne layout a function of any kind at a static route other than ``/`` is one too (SPEC §3.1:
  ``demo.py`` answers ``/demo/health`` when nothing more specific does).
- The zero-config app (``Layout.APP``) is one mount with zero segments: ``/``.
"""

from __future__ import annotations

import re
from pathlib import Path

from .types import Function, Layout, Route, Segment

_OPTIONAL = re.compile(r"^\[\[\.\.\.([^\[\]/]+)\]\]$")
_CATCHALL_EDGEONE = re.compile(r"^\[\[([^\[\]/.][^\[\]/]*)\]\]$")
_CATCHALL_NEXT = re.compile(r"^\[\.\.\.([^\[\]/]+)\]$")
_PARAM = re.compile(r"^\[([^\[\]/.][^\[\]/]*)\]$")

#: Segment kinds in matching priority order (SPEC §3.2): lower rank wins.
RANK = {"literal": 0, "param": 1, "catchall": 2, "optional": 3}


class RouteShapeError(ValueError):
    """A file name produces an impossible route (a catch-all that is not the last segment)."""


def parse_segment(name: str) -> Segment:
    """One file or folder name (without ``.py``) → ``Segment``: ``[[...x]]`` and ``[[x]]``
    optional (zero or more segments), ``[...x]`` catchall (one or more), ``[x]`` param, anything
    else literal (SPEC §3.1)."""
    for pattern, kind in ((_OPTIONAL, "optional"), (_CATCHALL_NEXT, "catchall"), (_CATCHALL_EDGEONE, "optional"), (_PARAM, "param")):
        m = pattern.match(name)
        if m:
            return Segment(kind, m.group(1))
    return Segment("literal", name)


def query_key(segment: Segment) -> str:
    """The query-string key a Vercel-layout function gets for ``segment``'s parameter: the text
    inside the file name's outer brackets, as ``vercel build`` writes its routes — ``[id]`` →
    ``id``, ``[...slug]`` → ``...slug``, ``[[...slug]]`` → ``[...slug]`` (checked with Vercel's own
    runtime; SPEC §3.1)."""
    if segment.kind == "catchall":
        return "..." + segment.value
    if segment.kind == "optional":
        return f"[...{segment.value}]"
    return segment.value


def display(segments: tuple[Segment, ...]) -> str:
    """A canonical pattern for ``segments`` (``/api/users/[id]``, ``/api/[...path]``, ``/``).
    Routes themselves display the file's own spelling (``/api/[[default]]``)."""
    shown = []
    for seg in segments:
        shown.append(
            seg.value if seg.kind == "literal"
            else f"[{seg.value}]" if seg.kind == "param"
            else f"[...{seg.value}]" if seg.kind == "catchall"
            else f"[[...{seg.value}]]"
        )
    return "/" + "/".join(shown)


def url_parts(function: Function, function_root: Path | None) -> tuple[str, ...]:
    """The URL-relevant path parts of a function's file: relative to the project root for Vercel
    (the first import root), to ``function_root`` for EdgeOne; ``index`` dropped; ``.py`` stripped."""
    base = function_root if function.layout is Layout.EDGEONE and function_root else function.import_roots[0]
    parts = list(function.path.relative_to(base).with_suffix("").parts)
    if parts and parts[-1] == "index":
        parts.pop()
    return tuple(parts)


def routes_for(function: Function, function_root: Path | None = None) -> tuple[Route, ...]:
    """The routes of one function: its main route, plus for the Vercel layout the ``.py`` alias
    (exact, ``alias=True``) when the file name is a literal and, for an ``index.py``, the
    ``<folder>/index`` alias (SPEC §3.1). The main route is a mount for a framework app at a
    static route, and in the EdgeOne layout for any function at a static route but ``/``. A file
    that does not parse (``function.error``) is routed as a mount too: its kind is unknown, and a
    framework app's paths (``/api/hello`` of a Flask ``api/index.py`` with a typo) must answer 500
    with the syntax error, not 404, while exact routes below it still win. Raises ``RouteShapeError`` for a catch-all that is not the last segment."""
    if function.layout is Layout.APP:
        return (Route("/", (), function, mount=True),)
    parts = url_parts(function, function_root)
    segments = tuple(parse_segment(p) for p in parts)
    for seg in segments[:-1]:
        if seg.kind in ("catchall", "optional"):
            raise RouteShapeError(f"catch-all segment {display((seg,))[1:]} must be the last part of the path")
    framework = function.entry.kind.is_framework if function.entry is not None else function.error is not None
    static = all(seg.kind == "literal" for seg in segments)
    edgeone = function.layout is Layout.EDGEONE and bool(segments)  # EdgeOne: "/" takes "/" only
    routes = [Route("/" + "/".join(parts), segments, function, mount=static and (framework or edgeone))]
    stem = function.path.stem
    if function.layout is Layout.VERCEL and parse_segment(stem).kind == "literal":
        dir_parts = function.path.relative_to(function.import_roots[0]).parent.parts
        folder = tuple(parse_segment(p) for p in dir_parts)
        names = (stem + ".py", stem) if stem == "index" else (stem + ".py",)
        for name in names:
            routes.append(Route("/" + "/".join((*dir_parts, name)), folder + (Segment("literal", name),), function, alias=True))
    return tuple(routes)


def priority_key(route: Route) -> tuple[tuple[int, str], ...]:
    """Sort key putting routes in matching priority order (SPEC §3.2): segment by segment from the
    left, literal < param < catch-all < optional (literals alphabetically for a stable display);
    a route ending here before a longer one; a mount after everything below it."""
    key: list[tuple[int, str]] = [(RANK[seg.kind], seg.value if seg.kind == "literal" else "") for seg in route.segments]
    key.append((9, "") if route.mount else (-1, ""))
    return tuple(key)


def shape_key(route: Route) -> tuple[tuple[str, str], ...]:
    """Two routes with the same shape key match exactly the same paths: a duplicate route."""
    return tuple((seg.kind, seg.value if seg.kind == "literal" else "") for seg in route.segments)
