"""``config.json`` routes of the ``vercel`` target (Build Output API v3) from a build's manifest.

The order is fnserve's request order (SPEC §5), which is Vercel's, written in Vercel's phases::

    main phase     cleanUrls redirects, trailingSlash redirects, legacy ``routes`` (as written),
                   ``redirects`` (Location + 308/307/statusCode), ``headers`` (``continue: true``)
    {"handle": "filesystem"}     static files (``static/``) and functions named by their path
                   ``rewrites`` (``check: true``: the destination is looked up again)
    {"handle": "miss"}           function routes that name a file exactly (``/api/hello``, the
                   ``/api/hello.py`` alias), ``check: true``
    {"handle": "rewrite"}        every other route of fnserve's table in priority order (dynamic
                   segments, catch-alls of one or more segments, optional catch-alls, mounts)

Vercel-layout routes pass their parameters as query (``dest: /api/users/[id]?id=$1``, as Vercel
does: the function sees its original path with ``id`` appended to the original query). A mount
(a WSGI/ASGI app at a literal route) also matches every path below it; the app sees the original
path (Vercel passes the original URL to a function), except the zero-config app (``Layout.APP``),
which sees the path after rewrites through a ``request.path`` transform (SPEC §3.4), as Vercel's
own Python builder does for framework apps. EdgeOne-layout parameters are not added to the query
(fnserve's runtime shim computes them and the mount prefix, see ``vercel_func``).

Path-to-regexp sources of ``vercel.json`` become PCRE ``src`` regexes with fnserve's own compiler
(``fnserve.project.pathpattern``); destinations refer to the captures as ``$1``…``$n``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from fnserve.build.manifest import FunctionRecord, Manifest, RouteRecord
from fnserve.project.pathpattern import PathPattern
from fnserve.project.routes import query_key
from fnserve.project.types import Segment

Route = dict[str, Any]

_PCRE_SPECIAL = set("\\[]^$.|?*+(){}")
_ONE_OR_MORE = r"([^/]+(?:/[^/]+)*)"
_DEST_TOKEN = re.compile(r":([A-Za-z0-9_]+)[*+?]?|\$\d+")


def pcre_escape(text: str) -> str:
    """``text`` as a PCRE literal (only the regex metacharacters escaped)."""
    return "".join("\\" + ch if ch in _PCRE_SPECIAL else ch for ch in text)


def func_name(function: FunctionRecord) -> str:
    """The ``functions/<name>.func`` name of a function: its file without ``.py``, relative to
    its function root (``api/users/[id].py`` → ``api/users/[id]``; EdgeOne
    ``cloud-functions/api/hello.py`` → ``api/hello``). A name that the filesystem phase would
    serve at ``/`` (``index``) gets a ``_fnserve_`` prefix: static ``index.html`` must win."""
    rel = function.id[:-3] if function.id.endswith(".py") else function.id
    for root in function.import_roots[1:]:
        if root != "." and rel.startswith(root.rstrip("/") + "/"):
            rel = rel[len(root.rstrip("/")) + 1:]
            break
    return "_fnserve_index" if rel == "index" else rel


def route_regex(segments: Sequence[Sequence[str]], mount: bool) -> str:
    """The ``src`` regex of one fnserve route: ``param`` → one segment, ``catchall`` → one or
    more, ``optional`` → zero or more; a trailing slash is ignored (``split_path``); a mount also
    matches every path below it. Captures: one per non-literal segment, in order."""
    body = ""
    for kind, value in segments:
        if kind == "literal":
            body += "/" + pcre_escape(value)
        elif kind == "param":
            body += "/([^/]+)"
        elif kind == "catchall":
            body += "/" + _ONE_OR_MORE
        else:
            body += "(?:/" + _ONE_OR_MORE + ")?"
    if mount:
        return "^" + body + "(?:/.*)?$"
    return "^" + body + "/?$"


def param_names(segments: Sequence[Sequence[str]]) -> list[str]:
    return [value for kind, value in segments if kind != "literal"]


def function_route(route: RouteRecord, function: FunctionRecord, *, check: bool = True) -> Route:
    """One fnserve route as a Build Output route to its ``.func`` (see the module docstring)."""
    dest = "/" + func_name(function)
    names = param_names(route.segments)
    if function.layout == "vercel" and names:
        keys = [query_key(Segment(kind, value)) for kind, value in route.segments if kind != "literal"]
        dest += "?" + "&".join(f"{key}=${i}" for i, key in enumerate(keys, start=1))
    if function.layout == "app":
        return {"src": "^/(.*)$", "dest": dest,
                "transforms": [{"type": "request.path", "op": "set", "args": "/$1"}]}
    out: Route = {"src": route_regex(route.segments, route.mount), "dest": dest}
    if check:
        out["check"] = True
    return out


def _pattern(source: str, where: str) -> tuple[str, tuple[str, ...]]:
    """A path-to-regexp source → (PCRE ``src``, its keys). Raises ``ConfigError`` naming ``where``."""
    compiled = PathPattern.compile(source, "vercel.json", where)
    regex = re.sub(r"\(\?P<([A-Za-z_]\w*)>", r"(?<\1>", compiled.regex.pattern)
    regex = re.sub(r"\(\?P=([A-Za-z_]\w*)\)", r"\\k<\1>", regex)
    return "^" + regex + "$", compiled.keys


def _destination(destination: str, keys: tuple[str, ...], *, rewrite: bool) -> str:
    """``:name`` (optional ``*``/``+``/``?`` modifier) / ``$N`` of a destination → ``$i``
    captures, never in the scheme or host of an absolute URL; for a rewrite whose destination
    uses no parameter, the named ones are appended to its query (Vercel's rule)."""
    index = {name: i for i, name in enumerate(keys, start=1)}
    scheme_host = ""
    found = re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*", destination)
    if found:
        scheme_host, destination = found.group(0), destination[found.end():]

    def repl(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            return m.group(0)
        return f"${index[name]}" if name in index else m.group(0)

    out = _DEST_TOKEN.sub(repl, destination)
    if rewrite and not _DEST_TOKEN.search(destination):
        named = [f"{k}=${i}" for k, i in index.items() if not k.isdigit()]
        if named:
            out += ("&" if "?" in out else "?") + "&".join(named)
    return scheme_host + out


def _conditions(rule: Mapping[str, Any], out: Route) -> Route:
    for key in ("has", "missing"):
        if key in rule:
            out[key] = rule[key]
    return out


def clean_urls_routes(trailing_slash: bool | None) -> list[Route]:
    """``cleanUrls: true``: ``/x.html`` and ``/d/index`` redirect (308) to the clean path."""
    location = "/$1/" if trailing_slash else "/$1"
    return [{"src": r"^/(?:(.+)/)?index(?:\.html)?/?$", "headers": {"Location": location}, "status": 308},
            {"src": r"^/(.*)\.html/?$", "headers": {"Location": location}, "status": 308}]


def trailing_slash_routes(enabled: bool) -> list[Route]:
    """``trailingSlash``: true adds one to extension-less paths, false removes it (308)."""
    if enabled:
        return [{"src": r"^/\.well-known(?:/.*)?$"},
                {"src": r"^/((?:[^/]+/)*[^/\.]+)$", "headers": {"Location": "/$1/"}, "status": 308},
                {"src": r"^/((?:[^/]+/)*[^/]+\.\w+)/$", "headers": {"Location": "/$1"}, "status": 308}]
    return [{"src": r"^/(.*)\/$", "headers": {"Location": "/$1"}, "status": 308}]


def rule_routes(rules: Mapping[str, Any]) -> tuple[list[Route], list[Route]]:
    """vercel.json routing keys (as written, ``Manifest.rules``) → (main-phase routes, rewrites).
    Raises ``ConfigError`` for a source fnserve cannot compile (``fnserve start`` would refuse it too)."""
    main: list[Route] = []
    trailing = rules.get("trailingSlash")
    if rules.get("cleanUrls"):
        main += clean_urls_routes(bool(trailing))
    if isinstance(trailing, bool):
        main += trailing_slash_routes(trailing)
    main += [dict(r) for r in rules.get("routes") or [] if isinstance(r, Mapping)]
    for i, rule in enumerate(rules.get("redirects") or []):
        src, keys = _pattern(rule.get("source"), f"redirects[{i}].source")
        status = (308 if rule["permanent"] else 307) if isinstance(rule.get("permanent"), bool) \
            else int(rule.get("statusCode") or 308)
        location = _destination(str(rule.get("destination", "/")), keys, rewrite=False)
        main.append(_conditions(rule, {"src": src, "headers": {"Location": location}, "status": status}))
    for i, rule in enumerate(rules.get("headers") or []):
        src, _keys = _pattern(rule.get("source"), f"headers[{i}].source")
        values = {str(h["key"]): str(h["value"]) for h in rule.get("headers") or [] if isinstance(h, Mapping)}
        main.append(_conditions(rule, {"src": src, "headers": values, "continue": True}))
    rewrites: list[Route] = []
    for i, rule in enumerate(rules.get("rewrites") or []):
        src, keys = _pattern(rule.get("source"), f"rewrites[{i}].source")
        out: Route = {"src": src, "dest": _destination(str(rule.get("destination", "/")), keys, rewrite=True),
                      "check": True}
        if rule.get("statusCode"):
            out["status"] = int(rule["statusCode"])
        rewrites.append(_conditions(rule, out))
    return main, rewrites


def exact(route: RouteRecord) -> bool:
    """A route naming one path exactly (all literal, not a mount): served before rewrites."""
    return not route.mount and all(kind == "literal" for kind, _v in route.segments)


def config_routes(manifest: Manifest) -> list[Route]:
    """The whole ``routes`` array of ``config.json`` (see the module docstring)."""
    functions = {f.id: f for f in manifest.functions}
    main, rewrites = rule_routes(manifest.rules)
    named = [function_route(r, functions[r.function]) for r in manifest.routes
             if exact(r) and functions[r.function].layout != "app"]
    others = [function_route(r, functions[r.function]) for r in manifest.routes
              if not exact(r) or functions[r.function].layout == "app"]
    return [*main, {"handle": "filesystem"}, *rewrites, {"handle": "miss"}, *named,
            {"handle": "rewrite"}, *others]


def clean_url_overrides(static_files: Sequence[str]) -> dict[str, dict[str, str]]:
    """``cleanUrls``: each ``x.html`` of ``static/`` is also served at ``x`` (config.json
    ``overrides``, as ``vercel build`` writes them)."""
    return {rel: {"path": rel[:-5]} for rel in static_files if rel.endswith(".html")}
