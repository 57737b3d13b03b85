"""The value types of the project model, shared by every other package.

All are frozen dataclasses: the model is built once per scan and never mutated; a reload builds a
new one. Paths are absolute ``Path`` objects; ids and patterns are POSIX strings.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path


class Layout(str, enum.Enum):
    """Which platform's rules a function follows (SPEC §1, §3.1, §3.4)."""

    VERCEL = "vercel"  # under api/: apps see the full path, params merged into the query
    EDGEONE = "edgeone"  # under cloud-functions/: a mount's static prefix moves to root_path
    APP = "app"  # the zero-config single app mounted at / (SPEC §3.3)


class EntryKind(str, enum.Enum):
    """The kind of export found statically (SPEC §2). WSGI vs ASGI for APP/APPLICATION is decided
    at load time by the runtime (SPEC §2.1)."""

    APP = "app"  # `app`: WSGI or ASGI
    APPLICATION = "application"  # `application`: WSGI or ASGI (Django)
    HANDLER = "handler"  # a BaseHTTPRequestHandler subclass named handler/Handler
    LAMBDA = "lambda"  # handler(event, context), including handler = Mangum(app)

    @property
    def is_framework(self) -> bool:
        """True for kinds that are WSGI/ASGI applications and so become mounts (SPEC §3.4)."""
        return self in (EntryKind.APP, EntryKind.APPLICATION)


@dataclass(frozen=True)
class Entry:
    """What a file exports. ``attr``: the attribute to load (``app``, ``application``, ``handler``,
    ``Handler`` or, for a configured entrypoint, any name); ``line``: 1-based line of the binding;
    ``methods``: for a handler class, the methods of the ``do_X`` it defines, found statically."""

    kind: EntryKind
    attr: str
    line: int
    methods: tuple[str, ...] = ()  # HANDLER only: HTTP methods of the ``do_X`` defined (``GET``, ``POST``)


@dataclass(frozen=True)
class Problem:
    """A warning or error found while scanning. ``file``: project-relative path or None;
    ``line``: 1-based or None; ``severity``: "error" or "warning"."""

    severity: str
    message: str
    file: str | None = None
    line: int | None = None
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}: " if self.file and self.line else f"{self.file}: " if self.file else ""
        return f"{where}{self.message}" + (f" ({self.hint})" if self.hint else "")


@dataclass(frozen=True)
class Function:
    """One entrypoint: loaded once per instance, serving many requests.

    ``id``: project-relative POSIX path of the file (``api/users/[id].py``), unique, used as the
    function's name in logs and metrics. ``module``: dotted import name relative to the first
    import root (``api.users.[id]``; for EdgeOne relative to ``cloud-functions/``).
    ``import_roots``: folders put on ``sys.path`` in order (project root, then ``cloud-functions/``
    for the EdgeOne layout). ``entry`` is None when the file could not be parsed; ``error`` then
    holds the syntax error, and requests to its route answer 500 with it.
    """

    id: str
    path: Path
    module: str
    layout: Layout
    entry: Entry | None
    import_roots: tuple[Path, ...]
    error: Problem | None = None


@dataclass(frozen=True)
class HelperModule:
    """A ``.py`` file that is not an entrypoint (SPEC §1): importable by functions, never a route.

    ``id``: project-relative POSIX path; ``module``: dotted name under the import root it lives in
    (``api._lib.greet``, ``lib.greet``); ``importers``: ids of the functions that import it,
    directly or transitively (sorted)."""

    id: str
    path: Path
    module: str
    importers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Segment:
    """One compiled path segment. ``kind``: "literal", "param" (``[x]``), "catchall" (one or
    more: ``[...x]``) or "optional" (zero or more: ``[[...x]]``, EdgeOne's ``[[x]]``). ``value``: the
    literal text or the parameter name."""

    kind: str
    value: str


@dataclass(frozen=True)
class Route:
    """The URL pattern of a function (SPEC §3.1).

    ``pattern``: display form, e.g. ``/api/users/[id]``. ``mount``: a function at a static
    route receiving every sub-path below it that no more specific route takes: a framework app
    (SPEC §3.4), or in the EdgeOne layout any kind but at ``/`` (SPEC §3.1). ``alias``: a second
    path of a Vercel function (``/api/x.py``, and ``/api/index`` for ``api/index.py``).
    """

    pattern: str
    segments: tuple[Segment, ...]
    function: Function
    mount: bool = False
    alias: bool = False

    @property
    def static_prefix(self) -> str:
        """The leading literal segments joined with ``/`` (``/api/flaskapp``; ``""`` for ``/``)."""
        parts = []
        for seg in self.segments:
            if seg.kind != "literal":
                break
            parts.append(seg.value)
        return "/" + "/".join(parts) if parts else ""


@dataclass(frozen=True)
class RouteMatch:
    """The result of matching a request path.

    ``params``: route parameters, each a string (a catch-all's value is the matched sub-path,
    segments joined with ``/``; an empty optional catch-all is ``""``). ``root_path``: the
    static prefix of an EdgeOne-layout framework app, else ``""``; ``path``: the full request
    path. The front passes both to the worker as ASGI 3.0 has them (``path`` includes
    ``root_path``); there WSGI gets ``SCRIPT_NAME = root_path``, ``PATH_INFO`` the rest, and an
    ASGI app the EdgeOne form (``path`` and ``raw_path`` the rest; ``runtime.asgi``), SPEC §3.4.
    """

    route: Route
    params: Mapping[str, str] = field(default_factory=dict)
    root_path: str = ""
    path: str = "/"

    @property
    def function(self) -> Function:
        return self.route.function
