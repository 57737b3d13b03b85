"""The front ASGI app: static files → vercel.json rules → route match → the function's worker.

``FrontApp`` is an ASGI 3 application served by uvicorn (uvloop + httptools). It holds one
immutable ``Site`` (project model, compiled rules, static folder, a project-wide problem) that
``swap()`` replaces atomically on reload: a request uses the ``Site`` it started with.

Pipeline for one request (SPEC §5, §6, Vercel's routing order; see ``server.rules``):

1. legacy ``routes`` (if any) may redirect, answer a status, or change the path;
2. ``trailingSlash`` / ``redirects`` → 3xx with the query kept;
3. static files from ``public/`` (GET/HEAD; ``cleanUrls``);
4. a *filesystem* route (every segment literal and the path equal to it) is dispatched;
5. ``rewrites``: the destination is resolved as static file or route; a function file sees the
   **original** URL (query: original, then the destination's, then route params), the
   zero-config app (``Layout.APP``) sees the **rewritten** path;
6. any other route match (dynamic, catch-all, mount) is dispatched; else 404.

Custom ``headers`` rules matching the original path are added to whatever answers. Errors are
rendered by ``server.errors`` (SPEC §3.5). Dispatching is delegated to a ``Dispatcher``: an
async callable ``(function, scope, receive, send)`` (``server.dispatch``) that raises an
``fnserve.errors.FnserveError`` with a ``status_code`` (a ``WorkerError``) when the function
cannot answer; it is rendered as is, or re-raised if the response had started.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from fnserve.errors import FnserveError, FunctionLoadFailed
from fnserve.project.routes import query_key
from fnserve.project.types import Function, Layout, Route, RouteMatch
from fnserve.runtime.asgitypes import Message, Receive, Scope, Send
from fnserve.server import errorpages
from fnserve.server.observe import CURRENT, ResponseObserver, log_access, override_headers
from fnserve.server.rules import Outcome, Request, Rules, merge_query
from fnserve.server.static import StaticFiles

ERROR_LOG = logging.getLogger("fnserve.error")

# ``scope["http_version"]`` values a function may see; anything else (HTTP/0.9, a request line
# without a version) is answered 400 here rather than failing inside a handler class (issue 10 item 5).
HTTP_VERSIONS = frozenset({"1.0", "1.1", "2", "2.0", "3"})


class Dispatcher(Protocol):
    """Runs one ASGI conversation in ``function``'s worker. Raises ``fnserve.errors.WorkerError``
    (an ``FnserveError`` carrying its ``status_code``) when the function cannot answer."""

    def __call__(self, function: Function, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]: ...


@dataclass(frozen=True)
class SiteProblem:
    """Why functions cannot be served right now (bad vercel.json, duplicate route). Every
    request that would reach a function answers 500 with this until the next reload."""

    message: str
    detail: str | None = None


@dataclass(frozen=True)
class Site:
    """Everything a request needs, swapped as one value on reload.

    ``routes``: an object with ``match(path) -> RouteMatch | None`` (``RouteTable``), or None when
    the project could not be loaded; ``body_limit``: bytes, or None for unlimited;
    ``not_found_hint``: ``path -> text | None``, the detail of a 404 (dev: Django's STATIC_URL).
    """

    routes: Any
    rules: Rules = field(default_factory=Rules)
    static: StaticFiles | None = None
    problem: SiteProblem | None = None
    body_limit: int | None = None
    not_found_hint: Callable[[str], str | None] | None = None  # dev: path → detail of its 404


class FrontApp:
    """The ASGI app. ``dev``: tracebacks and HTML error pages. ``on_shutdown``: coroutines run at
    lifespan shutdown (stopping the supervisor). ``access_log``: called once per request with
    ``(scope, status, started, label)`` (``started``: ``time.perf_counter()`` at arrival;
    ``label``: function id, ``static``, ``redirect``, ... or ``-``); default: ``observe.log_access``
    (one ``fnserve.access`` record; ``fnserve start`` gives ``observe.AccessLog``, which also
    counts metrics)."""

    def __init__(
        self,
        site: Site,
        dispatcher: Dispatcher,
        *,
        dev: bool = True,
        on_shutdown: tuple[Callable[[], Awaitable[None]], ...] = (),
        access_log: Callable[[Scope, int, float, str], None] | None = None,
    ) -> None:
        self.site = site
        self.dispatcher = dispatcher
        self.dev = dev
        self.on_shutdown = on_shutdown
        self.access_log = access_log or log_access

    def swap(self, site: Site) -> None:
        """Install a new ``Site``; requests already running keep the old one."""
        self.site = site

    observes_responses = True  # ``observe.Observed`` leaves the response observer to this app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        site = self.site
        started = time.perf_counter()
        req = Request(scope)
        extra = site.rules.response_headers(scope["path"], req) if site.rules.headers else None
        # the one send wrapper of the request: status and label for the access log, custom headers,
        # the request id header and runtime error answers (when observe.Observed is in front)
        state = ResponseObserver(send, CURRENT.get(), extra)
        try:
            if kind == "http" and scope.get("http_version", "1.1") not in HTTP_VERSIONS:
                state.label = "front"
                await errorpages.send_error(
                    scope, state, 400, f"HTTP/{scope.get('http_version')} is not supported: send HTTP/1.1", dev=self.dev)
                return
            await self._route(site, scope, receive, state, state, req)
            if kind == "websocket" and not state.status:
                # the app returned without accepting: refuse the handshake (403), not uvicorn's 500
                with contextlib.suppress(OSError, RuntimeError):  # the client may be gone already
                    await state({"type": "websocket.close", "code": 1008})
        except FnserveError as exc:
            if state.status or exc.response_started or exc.status_code is None:
                raise  # the response is under way: uvicorn drops the connection
            state.status = exc.status_code
            # a load error was logged once, with its traceback, when the load failed (supervisor):
            # per request only the access line (debug: this one too)
            level = logging.DEBUG if isinstance(exc, FunctionLoadFailed) else logging.WARNING
            ERROR_LOG.log(level, "%s %s: %s", scope.get("method", "WS"), scope["path"], exc.message)
            await errorpages.send_exception(scope, state, exc, dev=self.dev)
        finally:
            self.access_log(scope, state.status, started, state.label)

    async def _route(self, site: Site, scope: Scope, receive: Receive, send: Send, state: ResponseObserver, req: Request) -> None:
        path: str = scope["path"]
        query: bytes = scope.get("query_string", b"")
        method: str = scope.get("method", "GET")
        rules = site.rules
        legacy: Outcome | None = rules.legacy(path, method, req) if rules.routes else None
        if legacy is not None:
            send = _with_headers(send, legacy.headers)
            if legacy.redirect:
                state.label = "redirect"
                await _redirect(scope, send, *legacy.redirect)
                return
            if legacy.status:
                state.label = "routes"
                await errorpages.send_error(scope, send, legacy.status, f"vercel.json routes answer {legacy.status} for {path}", dev=self.dev)
                return
            if legacy.rewritten or legacy.external:
                await self._resolve_rewrite(site, scope, receive, send, state, legacy)
                return
        redirect = rules.redirect(path, query, req)
        if redirect is not None:
            state.label = "redirect"
            await _redirect(scope, send, *redirect)
            return
        if await self._static(site, scope, send, path, query, state):
            return
        if site.problem is not None:
            state.label = "project"
            await errorpages.send_error(scope, send, 500, site.problem.message, detail=site.problem.detail, dev=self.dev)
            return
        match: RouteMatch | None = site.routes.match(path) if site.routes is not None else None
        if match is not None and _is_filesystem(match, path):
            await self._dispatch(site, scope, receive, send, state, match)
            return
        if rules.rewrites:
            rewrite = rules.rewrite(path, req)
            if rewrite is not None:
                await self._resolve_rewrite(site, scope, receive, send, state, rewrite)
                return
        if match is not None:
            await self._dispatch(site, scope, receive, send, state, match)
            return
        hint = site.not_found_hint(path) if site.not_found_hint is not None else None
        await errorpages.send_error(scope, send, 404, f"no static file or function serves {path}", detail=hint,
                                    dev=self.dev)

    async def _resolve_rewrite(
        self, site: Site, scope: Scope, receive: Receive, send: Send, state: ResponseObserver, outcome: Outcome
    ) -> None:
        if outcome.external:
            state.label = "rewrite"
            await errorpages.send_error(scope, send, 502, f"rewrite to an external URL ({outcome.external}) is not proxied by fnserve", dev=self.dev)
            return
        if await self._static(site, scope, send, outcome.path, b"", state):
            return
        if site.problem is not None:
            await errorpages.send_error(scope, send, 500, site.problem.message, detail=site.problem.detail, dev=self.dev)
            return
        match = site.routes.match(outcome.path) if site.routes is not None else None
        if match is None:
            await errorpages.send_error(scope, send, 404, f"{scope['path']} was rewritten to {outcome.path}, which no static file or function serves", dev=self.dev)
            return
        await self._dispatch(site, scope, receive, send, state, match, rewritten=outcome)

    async def _static(self, site: Site, scope: Scope, send: Send, path: str, query: bytes, state: ResponseObserver) -> bool:
        if site.static is None or scope["type"] != "http" or scope["method"] not in ("GET", "HEAD"):
            return False
        hit = site.static.lookup(path)
        if hit is None:
            return False
        state.label = "static"
        if hit.redirect is not None:
            await _redirect(scope, send, 308, _join_query(quote(hit.redirect), query))
        else:
            assert hit.file is not None
            await site.static.respond(scope, send, hit.file)
        return True

    async def _dispatch(
        self, site: Site, scope: Scope, receive: Receive, send: Send, state: ResponseObserver,
        match: RouteMatch, rewritten: Outcome | None = None,
    ) -> None:
        function = match.function
        state.label = function.id
        if function.error is not None or function.entry is None:
            problem = function.error
            await errorpages.send_error(scope, send, 500, str(problem) if problem else f"{function.id}: no entrypoint", dev=self.dev)
            return
        limited = None
        is_http = scope["type"] == "http"
        length = _content_length(scope) if is_http else 0
        if site.body_limit is not None and is_http:
            if length is not None and length > site.body_limit:
                await errorpages.send_error(scope, send, 413, f"request body is {length} bytes, over the {site.body_limit}-byte limit", dev=self.dev)
                return
            if length is None:  # a chunked body: counted as it streams
                limited = _LimitedBody(receive, send, site.body_limit)
                receive, send = limited.receive_counted, limited.send_unless_over
        if is_http and length != 0:
            # read a body's start before a function slot is taken: a slow client holds only this task
            replay = await _preread(receive, PREREAD)
            if replay is None:  # the client left, or the body is over body_limit
                if limited is not None and limited.over:
                    await errorpages.send_error(scope, limited.send, 413, f"request body is over the {site.body_limit}-byte limit", dev=self.dev)
                return
            receive = replay
        await self.dispatcher(function, function_scope(scope, match, rewritten), receive, send)
        if limited is not None and limited.over and not limited.started:
            await errorpages.send_error(scope, limited.send, 413, f"request body is over the {site.body_limit}-byte limit", dev=self.dev)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                for hook in self.on_shutdown:
                    try:
                        await hook()
                    except Exception:
                        ERROR_LOG.exception("error while shutting down")
                await send({"type": "lifespan.shutdown.complete"})
                return


def function_scope(scope: Scope, match: RouteMatch, rewritten: Outcome | None = None) -> dict[str, Any]:
    """The scope a function's worker receives (ARCHITECTURE "runtime" contract, SPEC §3.4).

    ``path``/``raw_path``: the original request's, except after a rewrite to the zero-config
    app (``Layout.APP``), which sees the rewritten path; ``root_path``: the EdgeOne mount prefix;
    ``query_string``: original query, then the rewrite's query, then (Vercel layout) route params;
    ``fnserve.route_params``: ``{name: value}``.
    """
    new = dict(scope)
    function = match.function
    query: list[bytes] = []
    if rewritten is not None:
        query.append(rewritten.query)
        if function.layout is Layout.APP:
            new["path"] = rewritten.path
            new["raw_path"] = quote(rewritten.path).encode("ascii")
    if function.layout is Layout.VERCEL and match.params:
        keys = vercel_query_keys(match.route)
        query.extend(f"{quote(keys.get(k, k), safe='[]')}={quote(v, safe='')}".encode("ascii")
                     for k, v in match.params.items())
    if query:
        new["query_string"] = merge_query(scope.get("query_string", b""), query)
    new["root_path"] = match.root_path if function.layout is Layout.EDGEONE else ""
    new["fnserve.route_params"] = dict(match.params)
    return new


def vercel_query_keys(route: Route) -> dict[str, str]:
    """Parameter name → its query key in the Vercel layout (``project.routes.query_key``)."""
    return {seg.value: query_key(seg) for seg in route.segments if seg.kind in ("catchall", "optional")}


def _is_filesystem(match: RouteMatch, path: str) -> bool:
    """True when the request names the function's file itself (Vercel's filesystem phase)."""
    route = match.route
    if not route.mount:  # a non-mount route matches its own path only
        return all(seg.kind == "literal" for seg in route.segments)
    return (path.rstrip("/") or "/") == (route.static_prefix or "/") and all(
        seg.kind == "literal" for seg in route.segments
    )


def _with_headers(send: Send, headers: tuple[tuple[bytes, bytes], ...]) -> Send:
    if not headers:
        return send

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = dict(message)
            message["headers"] = override_headers(message.get("headers", ()), list(headers))
        await send(message)

    return wrapped


class _LimitedBody:
    """A request without ``Content-Length`` (chunked) whose body is counted as it streams: past
    ``limit`` bytes, before any response, the function is told the client left
    (``http.disconnect``) and what it sends is dropped, so the caller answers 413 instead
    (``over`` and not ``started``) with the real ``send``."""

    __slots__ = ("receive", "send", "limit", "seen", "over", "started")

    def __init__(self, receive: Receive, send: Send, limit: int) -> None:
        self.receive, self.send, self.limit = receive, send, limit
        self.seen, self.over, self.started = 0, False, False

    async def receive_counted(self) -> Message:
        if self.over:
            return {"type": "http.disconnect"}
        message = await self.receive()
        self.seen += len(message.get("body", b""))
        if self.seen > self.limit and not self.started:
            self.over = True
            return {"type": "http.disconnect"}
        return message

    async def send_unless_over(self, message: Message) -> None:
        if self.over:
            return
        self.started = self.started or message["type"] == "http.response.start"
        await self.send(message)


PREREAD = 1024 * 1024
"""Bytes of a request body the front reads before dispatching (before a function slot is taken;
issue 10 item 4): a body up to this size reaches the function whole, however slowly it came."""


async def _preread(receive: Receive, limit: int) -> Receive | None:
    """Read body chunks until the body ends or ``limit`` bytes came; return a ``receive`` that
    gives them as one ``http.request`` first, then passes through. None: the client left first."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        body: bytes = message.get("body", b"")
        chunks.append(body)
        size += len(body)
        more: bool = message.get("more_body", False)
        if not more or size >= limit:
            break
    pending: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": more}]

    async def replay() -> Message:
        return pending.pop() if pending else await receive()

    return replay


def _content_length(scope: Scope) -> int | None:
    """The request body's length: ``Content-Length``, 0 when the request has neither it nor
    ``Transfer-Encoding`` (no body, RFC 9112 §6.3: most GETs need no counting wrapper), None
    when it must be counted as it streams (chunked, or an unreadable ``Content-Length``)."""
    chunked = False
    for k, v in scope.get("headers", ()):
        if k == b"content-length":
            try:
                return int(v)
            except ValueError:
                return None
        if k == b"transfer-encoding":
            chunked = True
    return None if chunked else 0


def _join_query(location: str, query: bytes) -> str:
    return location + ("?" + query.decode("latin-1") if query else "")


async def _redirect(scope: Scope, send: Send, status: int, location: str) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    body = f"Redirecting to {location}\n".encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"location", location.encode("latin-1", "replace")),
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
        ],
    })
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})


def static_for(project_dir: Path, clean_urls: bool) -> StaticFiles:
    """The ``public/`` folder of a project (SPEC §6)."""
    return StaticFiles(project_dir / "public", clean_urls=clean_urls)
