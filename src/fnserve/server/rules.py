"""vercel.json routing rules applied by the front server (SPEC §5; Vercel's routing order).

Order for one request, as ``@vercel/routing-utils`` builds it for ``vercel.json``:

1. ``headers``: every rule whose ``source`` matches the *original* path adds its headers to the
   response (whatever produced it: function, static file, redirect, error); a rule's value wins
   over a same-named header from the function.
2. ``trailingSlash`` redirect (308), then ``redirects`` (first match; ``statusCode``, else 308
   for ``permanent`` true/absent, 307 for false). The original query string is kept and appended
   after the destination's own query.
3. the filesystem: static files, then exact function routes (done by ``server.app``).
4. ``rewrites``: the first matching rule gives a new path (and query parameters appended to the
   original query); an external destination (``https://...``) is not proxied (502 explains it).

Legacy ``routes`` (``src`` regex, ``dest``, ``status``, ``headers``, ``methods``, ``continue``)
are applied in order before everything else when present (Vercel forbids mixing them with the
rules above).

A *pattern* here is anything with ``match(path) -> dict[str, str] | None`` and
``substitute(dest, params) -> str`` (``fnserve.config``'s ``PathPattern``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol
from urllib.parse import quote


class Pattern(Protocol):
    def match(self, path: str) -> dict[str, str] | None: ...

    def substitute(self, destination: str, params: dict[str, str], *, rewrite: bool = False) -> str: ...


@dataclass(frozen=True)
class Redirect:
    source: Pattern
    destination: str
    status: int = 308


@dataclass(frozen=True)
class Rewrite:
    source: Pattern
    destination: str


@dataclass(frozen=True)
class HeaderRule:
    source: Pattern
    headers: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class LegacyRoute:
    """One vercel.json ``routes`` entry. ``src``: a pattern (``RegexPattern``: anchored,
    case-insensitive; ``$1``/``$name`` substituted into ``dest`` and header values)."""

    src: Pattern
    dest: str | None = None
    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    methods: frozenset[str] | None = None
    cont: bool = False


@dataclass(frozen=True)
class Outcome:
    """What the rules decided for a request path.

    ``redirect``: ``(status, location)`` to answer with; ``status``: a bare status to answer
    with (legacy ``routes`` with ``status`` and no ``dest``); ``path``/``query``: the path to
    resolve and extra query (``bytes``, already encoded) when a rule rewrote it; ``rewritten``:
    True when ``path`` differs from the request's; ``external``: a URL we refuse to proxy.
    """

    path: str
    query: bytes = b""
    rewritten: bool = False
    redirect: tuple[int, str] | None = None
    status: int | None = None
    external: str | None = None
    headers: tuple[tuple[bytes, bytes], ...] = field(default=())


@dataclass(frozen=True)
class Rules:
    """The compiled routing rules of one config. Immutable; a config reload builds a new one."""

    redirects: tuple[Redirect, ...] = ()
    rewrites: tuple[Rewrite, ...] = ()
    headers: tuple[HeaderRule, ...] = ()
    routes: tuple[LegacyRoute, ...] = ()
    clean_urls: bool = False
    trailing_slash: bool | None = None

    @property
    def empty(self) -> bool:
        return not (self.redirects or self.rewrites or self.headers or self.routes) and self.trailing_slash is None

    def response_headers(self, path: str) -> list[tuple[bytes, bytes]]:
        """Headers of every ``headers`` rule matching ``path`` (lower-cased names, in order)."""
        out: list[tuple[bytes, bytes]] = []
        for rule in self.headers:
            if rule.source.match(path) is not None:
                out.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in rule.headers)
        return out

    def redirect(self, path: str, query: bytes) -> tuple[int, str] | None:
        """``trailingSlash`` then ``redirects``: ``(status, location)`` or None."""
        if self.trailing_slash is True and not path.endswith("/"):
            if "." not in path.rsplit("/", 1)[-1]:
                return 308, _with_query(quote(path) + "/", query)
        elif self.trailing_slash is False and path.endswith("/") and path != "/":
            return 308, _with_query(quote(path.rstrip("/")) or "/", query)
        for rule in self.redirects:
            params = rule.source.match(path)
            if params is not None:
                return rule.status, _with_query(rule.source.substitute(rule.destination, params), query)
        return None

    def rewrite(self, path: str) -> Outcome | None:
        """The first matching ``rewrites`` rule as an ``Outcome``, or None."""
        for rule in self.rewrites:
            params = rule.source.match(path)
            if params is None:
                continue
            dest = rule.source.substitute(rule.destination, params, rewrite=True)
            if dest.startswith(("http://", "https://")):
                return Outcome(path=path, external=dest)
            new_path, _, q = dest.partition("?")
            return Outcome(path=new_path or "/", query=q.encode("latin-1"), rewritten=new_path != path)
        return None

    def legacy(self, path: str, method: str) -> Outcome | None:
        """Apply legacy ``routes`` in order; None when there are none or none matched."""
        if not self.routes:
            return None
        headers: list[tuple[bytes, bytes]] = []
        current, query, touched = path, b"", False
        for route in self.routes:
            if route.methods is not None and method not in route.methods:
                continue
            m = route.src.match(current)
            if m is None:
                continue
            touched = True
            headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in route.headers)
            location = next((v for k, v in route.headers if k.lower() == "location"), None)
            if route.status and location and not route.dest:
                location = route.src.substitute(location, m)
                headers = [(k, v) for k, v in headers if k != b"location"]
                return Outcome(path=path, redirect=(route.status, location), headers=tuple(headers))
            if route.dest:
                dest = route.src.substitute(route.dest, m)
                current, _, q = dest.partition("?")
                query = q.encode("latin-1")
            if route.status and not route.dest:
                return Outcome(path=current, status=route.status, headers=tuple(headers))
            if not route.cont:
                break
        if not touched:
            return None
        return Outcome(path=current, query=query, rewritten=current != path, headers=tuple(headers))


def _with_query(location: str, query: bytes) -> str:
    if not query:
        return location
    sep = "&" if "?" in location else "?"
    return location + sep + query.decode("latin-1")


def merge_query(original: bytes, extra: Iterable[bytes]) -> bytes:
    """Join query strings, original first (Vercel: ``y=2`` + ``id=42`` → ``y=2&id=42``)."""
    parts = [original] if original else []
    parts.extend(p for p in extra if p)
    return b"&".join(parts)


def from_config(vercel: Any) -> Rules:
    """Build ``Rules`` from ``Config.vercel`` (``fnserve.config``). See ``_adapt`` notes."""
    if vercel is None:
        return Rules()
    return _adapt(vercel)


def _adapt(v: Any) -> Rules:
    # Filled in against fnserve.config's VercelConfig once it lands; attribute access only.
    def get(*names: str, default: Any = None) -> Any:
        for n in names:
            if hasattr(v, n):
                return getattr(v, n)
        return default

    redirects = tuple(
        Redirect(r.source, r.destination, _redirect_status(r)) for r in get("redirects", default=()) or ()
    )
    rewrites = tuple(Rewrite(r.source, r.destination) for r in get("rewrites", default=()) or ())
    headers = tuple(
        HeaderRule(h.source, tuple(_pairs(h.headers))) for h in get("headers", default=()) or ()
    )
    routes = tuple(_legacy(r) for r in get("routes", default=()) or ())
    return Rules(
        redirects=redirects,
        rewrites=rewrites,
        headers=headers,
        routes=routes,
        clean_urls=bool(get("clean_urls", "cleanUrls", default=False)),
        trailing_slash=get("trailing_slash", "trailingSlash", default=None),
    )


def _redirect_status(r: Any) -> int:
    status = getattr(r, "status_code", None) or getattr(r, "status", None)
    if status:
        return int(status)
    permanent = getattr(r, "permanent", None)
    return 307 if permanent is False else 308


def _pairs(headers: Any) -> Iterable[tuple[str, str]]:
    if isinstance(headers, dict):
        return list(headers.items())
    out = []
    for h in headers:
        if isinstance(h, dict):
            out.append((h["key"], h["value"]))
        elif isinstance(h, tuple):
            out.append(h)
        else:
            out.append((h.key, h.value))
    return out


def _legacy(r: Any) -> LegacyRoute:
    src = getattr(r, "src")
    if isinstance(src, str):
        from fnserve.project.pathpattern import RegexPattern

        src = RegexPattern.compile(src, "vercel.json", "routes[].src")
    methods = getattr(r, "methods", None)
    return LegacyRoute(
        src=src,
        dest=getattr(r, "dest", None),
        status=getattr(r, "status", None),
        headers=tuple(_pairs(getattr(r, "headers", None) or ())),
        methods=frozenset(m.upper() for m in methods) if methods else None,
        cont=bool(getattr(r, "continue_", False) or getattr(r, "cont", False)),
    )
