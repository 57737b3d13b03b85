"""vercel.json routing rules applied by the front server (SPEC §5; Vercel's routing order).

Order for one request, as ``@vercel/routing-utils`` builds it for ``vercel.json``:

1. ``headers``: every rule whose ``source`` matches the *original* path adds its headers to the
   response (whatever produced it: function, static file, redirect, error); a rule's value wins
   over a same-named header from the function.
2. ``trailingSlash`` redirect (308), then ``redirects`` (first match; its ``status_code``:
   308 by default, 307 for ``permanent: false``). The original query string is kept, appended
   after the destination's own query.
3. the filesystem: static files, then exact function routes (done by ``server.app``).
4. ``rewrites``: the first matching rule gives a new path (and query parameters appended to the
   original query); an external destination (``https://...``) is not proxied (502 explains it).

Legacy ``routes`` (``src`` regex, ``dest``, ``status``, ``headers``, ``methods``, ``continue``)
are applied in order before everything else when present (Vercel forbids mixing them with the
rules above); ``handle`` phase markers are skipped. ``has``/``missing`` conditions (header,
cookie, query, host) are honoured everywhere; their named groups feed the destination.

The rule objects are ``fnserve.project.vercel_types``' (compiled ``PathPattern`` /
``RegexPattern``): this module only matches and substitutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, quote

from fnserve.project.vercel_types import HeaderRule, LegacyRoute, Redirect, Rewrite
from fnserve.runtime.asgitypes import Scope


@dataclass(frozen=True)
class Outcome:
    """What the rules decided for a request path.

    ``redirect``: ``(status, location)`` to answer with; ``status``: a bare status to answer
    with (legacy ``routes`` with ``status`` and no ``dest``); ``path``/``query``: the path to
    resolve and extra query (``bytes``, already encoded) when a rule rewrote it; ``rewritten``:
    True when ``path`` differs from the request's; ``external``: a URL fnserve does not proxy;
    ``headers``: headers added by legacy routes.
    """

    path: str
    query: bytes = b""
    rewritten: bool = False
    redirect: tuple[int, str] | None = None
    status: int | None = None
    external: str | None = None
    headers: tuple[tuple[bytes, bytes], ...] = field(default=())


class Request:
    """Lazy views of a scope for ``has``/``missing`` conditions."""

    def __init__(self, scope: Scope) -> None:
        self.scope = scope
        self._headers: dict[str, str] | None = None

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope.get("headers", ())}
        return self._headers

    def value(self, kind: str, key: str | None) -> str | None:
        if kind == "header":
            return self.headers.get((key or "").lower())
        if kind == "host":
            return self.headers.get("host", "").split(":")[0] or None
        if kind == "query":
            return dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)).get(key or "")
        if kind == "cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(self.headers.get("cookie", ""))
            except Exception:
                return None
            morsel = jar.get(key or "")
            return morsel.value if morsel else None
        return None


def _conditions(rule: Any, req: Request | None) -> dict[str, str] | None:
    """Params from ``has`` when every ``has`` holds and no ``missing`` does, else None."""
    has, missing = getattr(rule, "has", ()), getattr(rule, "missing", ())
    if not has and not missing:
        return {}
    if req is None:
        return None
    params: dict[str, str] = {}
    for cond in has:
        found = cond.test(req.value(cond.type, cond.key))
        if found is None:
            return None
        params.update(found)
    for cond in missing:
        if cond.test(req.value(cond.type, cond.key)) is not None:
            return None
    return params


def _match(pattern: Any, rule: Any, path: str, req: Request | None) -> dict[str, str] | None:
    """``pattern`` matched against ``path`` and the rule's ``has``/``missing`` conditions: the
    substitution params (path params, then those captured by ``has``), or None."""
    params = pattern.match(path)
    if params is None:
        return None
    extra = _conditions(rule, req)
    if extra is None:
        return None
    return {**params, **extra} if extra else params


@dataclass(frozen=True)
class Rules:
    """The compiled routing rules of one config. Immutable; a config reload builds a new one."""

    redirects: tuple[Redirect, ...] = ()
    rewrites: tuple[Rewrite, ...] = ()
    headers: tuple[HeaderRule, ...] = ()
    routes: tuple[LegacyRoute, ...] = ()
    clean_urls: bool = False
    trailing_slash: bool | None = None

    def response_headers(self, path: str, req: Request | None = None) -> list[tuple[bytes, bytes]]:
        """Headers of every ``headers`` rule matching ``path`` (lower-cased names, in order)."""
        out: list[tuple[bytes, bytes]] = []
        for rule in self.headers:
            params = _match(rule.source, rule, path, req)
            if params is not None:
                out.extend(
                    (k.lower().encode("latin-1"), rule.source.substitute(v, params).encode("latin-1"))
                    for k, v in rule.headers
                )
        return out

    def redirect(self, path: str, query: bytes, req: Request | None = None) -> tuple[int, str] | None:
        """``trailingSlash`` then ``redirects``: ``(status, location)`` or None."""
        if self.trailing_slash is True and not path.endswith("/"):
            if "." not in path.rsplit("/", 1)[-1]:
                return 308, _with_query(quote(path) + "/", query)
        elif self.trailing_slash is False and path.endswith("/") and path != "/":
            return 308, _with_query(quote(path.rstrip("/")) or "/", query)
        for rule in self.redirects:
            params = _match(rule.source, rule, path, req)
            if params is None:
                continue
            location = rule.source.substitute(rule.destination, params)
            return rule.status_code, _with_query(location, query)
        return None

    def rewrite(self, path: str, req: Request | None = None) -> Outcome | None:
        """The first matching ``rewrites`` rule as an ``Outcome``, or None."""
        for rule in self.rewrites:
            params = _match(rule.source, rule, path, req)
            if params is None:
                continue
            dest = rule.source.substitute(rule.destination, params, rewrite=True)
            if dest.startswith(("http://", "https://")):
                return Outcome(path=path, external=dest)
            new_path, _, q = dest.partition("?")
            return Outcome(path=new_path or "/", query=q.encode("latin-1"), rewritten=new_path != path)
        return None

    def legacy(self, path: str, method: str, req: Request | None = None) -> Outcome | None:
        """Apply legacy ``routes`` in order; None when there are none or none matched."""
        headers: list[tuple[bytes, bytes]] = []
        current, query, touched = path, b"", False
        for route in self.routes:
            if route.pattern is None or (route.methods is not None and method not in route.methods):
                continue
            params = _match(route.pattern, route, current, req)
            if params is None:
                continue
            touched = True
            location = None
            for k, v in route.headers:
                value = route.pattern.substitute(v, params)
                if k.lower() == "location":
                    location = value
                else:
                    headers.append((k.lower().encode("latin-1"), value.encode("latin-1")))
            if route.status and location and not route.dest:
                return Outcome(path=path, redirect=(route.status, location), headers=tuple(headers))
            if route.dest:
                dest = route.pattern.substitute(route.dest, params)
                if dest.startswith(("http://", "https://")):
                    return Outcome(path=path, external=dest, headers=tuple(headers))
                current, _, q = dest.partition("?")
                query = q.encode("latin-1")
            if route.status and not route.dest:
                return Outcome(path=current, status=route.status, headers=tuple(headers))
            if not route.continue_:
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
    """``Rules`` from a ``VercelConfig`` (``Config.vercel``); empty rules for None."""
    if vercel is None:
        return Rules()
    return Rules(
        redirects=tuple(vercel.redirects),
        rewrites=tuple(vercel.rewrites),
        headers=tuple(vercel.headers),
        routes=tuple(r for r in vercel.routes if r.pattern is not None),
        clean_urls=bool(vercel.clean_urls),
        trailing_slash=vercel.trailing_slash,
    )
