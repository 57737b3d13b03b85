"""The front's half of the direct path (issue 14 item 2; docs/ARCHITECTURE.md "direct path").

In ``fnserve start`` the front still accepts every client connection. ``FrontHttpProtocol``
(``server.frontdoor``) holds the bytes of a connection's first request head back from uvicorn's
parser and asks ``DirectRouter.try_pass`` (and again at later request boundaries while the answer
was ``Verdict.BUSY``: the function had no free instance yet): when that request is plain (HTTP/1.1, no ``Upgrade``,
``Expect`` or ``Transfer-Encoding``, a body within ``body_limit``) and goes straight to a function
(``SitePlan``: no vercel.json rule matching that path, no static file under it, a function that
loaded), and a ready instance of that function has a free slot, the client socket and the bytes
read are passed to that instance (``Supervisor.pass_connection``: ``socket.send_fds`` over the
instance's SEQPACKET channel); the instance serves the connection itself from then on
(``runtime.direct``) and the front never sees its requests: 11 µs of CPU per request instead of
58 on keep-alive traffic (bench/ipc.py). Anything else — and every connection while the router is
off — goes through uvicorn and ``FrontApp`` as before, so behaviour does not depend on the path.

A later request on a passed connection that the instance should not serve (another function's
route, a static path, anything unusual) is **handed back**: ``hand_back(sock, data)`` serves the
connection through uvicorn from the request's first byte (``data``) for the rest of its life.
The instance reports what it served (``report``: the access log lines and metrics the front would
have written); one passed connection holds one lease of its instance until it closes or comes back.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any
from urllib.parse import unquote

from fnserve.errors import FnserveError
from fnserve.project.types import Function, Layout
from fnserve.server.admin import PREFIX
from fnserve.server.app import Site, vercel_query_keys
from fnserve.server.errorpages import render
from fnserve.server.logs import ACCESS, access_record
from fnserve.server.metrics import Metrics
from fnserve.server.observe import CUT_OFF_MESSAGE, REQUEST_ID_HEADER
from fnserve.supervisor.slottable import SlotRequest

LOG = logging.getLogger("fnserve.start")
ERROR_LOG = logging.getLogger("fnserve.error")  # = server.app's: the warning of a request that failed

__all__ = ["DirectRouter", "SitePlan", "Verdict", "static_exclusions"]

# request headers that make a request not plain: the front serves it (uvicorn + FrontApp)
_NOT_PLAIN = frozenset({b"upgrade", b"expect", b"transfer-encoding"})
# the methods the front's parser (llhttp) takes with an origin-form target; any other gets its 400
_METHODS = frozenset(b"DELETE GET HEAD POST PUT OPTIONS TRACE COPY LOCK MKCOL MOVE PROPFIND PROPPATCH SEARCH UNLOCK "
                     b"BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY SUBSCRIBE UNSUBSCRIBE "
                     b"PATCH PURGE MKCALENDAR LINK UNLINK SOURCE QUERY".split())
MAX_PASSED_BYTES = 60 * 1024  # bytes read from a connection that may travel with it (one SEQPACKET message)


class Verdict(enum.Enum):
    """What ``DirectRouter.try_pass`` decided for a request head (see there)."""

    PASSED = "passed"  # an instance serves the connection now
    BUSY = "busy"  # a direct-path request, but no ready instance with a free slot: ask again later
    FRONT = "front"  # the front serves this request; asking again on this connection is not worth it


@dataclass(frozen=True)
class SitePlan:
    """What the direct path may serve on one ``Site`` (swapped with it). ``eligible``: False when
    the project has legacy vercel.json ``routes`` or ``trailingSlash``, a project-wide problem or
    no route table: then nothing is passed. ``routes``: every route of the project as the
    worker's trie takes them (the plan's ``"routes"``); ``exclude``: paths equal to an entry, or
    under an entry ending with ``/`` (other than ``/`` itself), that a static file (or the admin
    endpoints) may answer; ``patterns``: the sources of the redirects, rewrites and headers rules
    (a path one of them matches is the front's); ``functions``: ids of the functions that may be
    passed connections (loaded without error)."""

    site: Site
    eligible: bool = False
    routes: tuple[dict[str, Any], ...] = ()
    exclude: tuple[str, ...] = ()
    patterns: tuple[re.Pattern[str], ...] = ()
    functions: frozenset[str] = frozenset()
    _exact: frozenset[str] = field(default=frozenset(), repr=False)
    _prefixes: tuple[str, ...] = field(default=(), repr=False)
    _pure: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)  # literal exact routes by path
    _dynamic: tuple[dict[str, Any], ...] = field(default=(), repr=False)  # the other routes
    _needed: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)  # routes_for's answers
    _own: dict[str, list[dict[str, Any]]] = field(default_factory=dict, repr=False)  # routes by function id

    @classmethod
    def of(cls, site: Site) -> SitePlan:
        rules = site.rules
        if site.problem is not None or site.routes is None or rules.routes or rules.trailing_slash is not None:
            return cls(site)  # legacy routes and trailingSlash may apply to any path
        # a path a redirect, rewrite or headers rule matches (whatever its has/missing conditions)
        # is served by the front: rewrites only apply to paths no function file names, which is
        # finer than this, but a path sent to the front is only ever slower, never wrong
        sources: list[Any] = [*(r.source for r in rules.redirects), *(r.source for r in rules.rewrites),
                              *(r.source for r in rules.headers)]
        patterns = tuple(dict.fromkeys(source.regex for source in sources))
        exclude = (PREFIX.rstrip("/") + "/", *static_exclusions(site.static))
        routes = tuple(_route_json(route) for route in site.routes.routes)
        functions = frozenset(r.function.id for r in site.routes.routes
                              if r.function.error is None and r.function.entry is not None)
        prefixes = tuple(e for e in exclude if len(e) > 1 and e.endswith("/"))
        pure: dict[str, list[dict[str, Any]]] = {}
        own: dict[str, list[dict[str, Any]]] = {}
        for route in routes:
            own.setdefault(route["function"], []).append(route)
            if _literal(route):
                pure.setdefault(_path(route), []).append(route)
        return cls(site, True, routes, exclude, patterns, functions, frozenset(e for e in exclude if e not in prefixes),
                   prefixes, pure, tuple(r for r in routes if not _literal(r)), _own=own)

    def routes_for(self, function_id: str) -> list[dict[str, Any]]:
        """The routes an instance of ``function_id`` needs to tell its own paths (the plan's
        ``"routes"``): its routes and every route that can match a path one of them matches (a
        path is the function's when the most specific route matching it is one of its routes, and
        that route matches the path too, so the rest never decide). Not every route of the
        project: a cold start stays O(1) in the number of functions when routes are literal paths
        (issue 14 item 3); computed once per function and site."""
        cached = self._needed.get(function_id)
        if cached is not None:
            return cached
        own = self._own.get(function_id, [])
        needed = {id(r): r for r in own}
        for mine in own:
            candidates = self._dynamic if _literal(mine) else self.routes
            for other in candidates:
                if id(other) not in needed and _overlap(mine, other):
                    needed[id(other)] = other
            for pure in (self._pure.get(_path(mine), ()) if _literal(mine) else ()):
                needed[id(pure)] = pure
        out = self._needed[function_id] = list(needed.values())
        return out

    def excluded(self, path: str) -> bool:
        """True when ``path`` (decoded) is one of ``exclude``, or below one that ends with ``/``
        (``/`` itself excludes only ``/``)."""
        norm = "/" + "/".join(s for s in path.split("/") if s)  # static lookups drop empty segments
        for candidate in (path, norm):
            if candidate in self._exact or candidate.startswith(self._prefixes) or (candidate + "/") in self._prefixes:
                return True
        return any(p.fullmatch(path) is not None or (path == "/" and p.fullmatch("") is not None) for p in self.patterns)

    def function_for(self, path: str) -> Function | None:
        """The function a plain request for ``path`` (decoded, without the query) goes to when no
        static file or rule can apply, else None."""
        if not self.eligible or self.excluded(path):
            return None
        match = self.site.routes.match(path)
        if match is None or match.function.id not in self.functions:
            return None
        return match.function  # type: ignore[no-any-return]  # Site.routes is typed Any


def static_exclusions(static: Any) -> list[str]:
    """The paths a ``StaticFiles`` (and its ``also`` folders) may answer, coarsely: for each
    top-level entry of the folder, ``/name`` (and ``/stem`` for ``stem.html``: cleanUrls) and, for
    a folder, ``/name/``; ``/`` when there is a top-level ``index.html``. Coarse is safe: an
    excluded path only means the front serves it (a static file, or the function after all)."""
    out: list[str] = []
    folders = [static] if static is not None else []
    while folders:
        files = folders.pop()
        folders.extend(getattr(files, "also", ()))
        root = getattr(files, "directory", None)
        try:
            entries = list(root.iterdir()) if root is not None and root.is_dir() else []
        except OSError:
            entries = []
        for entry in entries:
            name = entry.name
            if entry.is_dir():
                out.append(f"/{name}/")
            out.append(f"/{name}")
            if name.endswith(".html"):
                stem = name[:-5]
                out.append(f"/{stem}" if stem != "index" else "/")
    return sorted(set(out))


def _literal(route: dict[str, Any]) -> bool:
    """Every segment literal and not a mount: the route matches exactly one path."""
    return not route["mount"] and all(kind == "literal" for kind, _ in route["segments"])


def _path(route: dict[str, Any]) -> str:
    return "/" + "/".join(value for _, value in route["segments"])


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Can one path match both routes? (Conservative: True when unsure — a catch-all, a mount.)"""
    sa, sb = a["segments"], b["segments"]
    for i in range(max(len(sa), len(sb))):
        if i >= len(sa):
            return bool(a["mount"]) or sb[i][0] == "optional"
        if i >= len(sb):
            return bool(b["mount"]) or sa[i][0] == "optional"
        (ka, va), (kb, vb) = sa[i], sb[i]
        if ka in ("catchall", "optional") or kb in ("catchall", "optional"):
            return True
        if ka == "literal" and kb == "literal" and va != vb:
            return False
    return True


def _route_json(route: Any) -> dict[str, Any]:
    function = route.function
    framework = function.entry is not None and function.entry.kind.is_framework
    return {
        "pattern": route.pattern,
        "segments": [[seg.kind, seg.value] for seg in route.segments],
        "mount": bool(route.mount),
        "function": function.id,
        "root_path": route.static_prefix if framework and function.layout is Layout.EDGEONE else "",
        "layout": function.layout.value,
        "query_keys": vercel_query_keys(route) if function.layout is Layout.VERCEL else {},
    }


@dataclass(frozen=True)
class FirstHead:
    """The parts of a request head the pass decision needs (``parse_first_head``)."""

    method: bytes
    path: str
    version: bytes
    headers: tuple[tuple[bytes, bytes], ...]


def parse_first_head(head: bytes) -> FirstHead | None:
    """Split ``head`` (request line and header lines, without the blank line) into a
    ``FirstHead``; None when anything is unusual (the front's parser then deals with it: a 400,
    431...). Header names are lower-cased."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or not parts[1].startswith(b"/"):
        return None
    method, target, version = parts
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or b"\r" in line or b"\n" in line or b"\0" in line:
            return None
        headers.append((name.lower(), value.strip(b" \t")))
    raw_path = target.partition(b"?")[0]
    try:
        path = unquote(raw_path.decode("ascii"))
    except UnicodeDecodeError:
        return None
    return FirstHead(method, path, version, tuple(headers))


class DirectRouter:
    """The front's side of the direct path (module docstring). ``supervisor``: the ``Supervisor``
    (``pass_connection``, ``set_direct_plan``, ``refresh_direct_plans``, hooks ``on_hand_back`` and
    ``on_direct_report``); ``limits``: the ``FrontLimits`` (header limits and timeouts the
    instance applies too); ``metrics``: counted per reported request; ``max_duration``:
    function id → seconds or None. ``enabled``: False turns passing off (the hand-back side
    keeps working for connections already passed)."""

    def __init__(self, supervisor: Any, limits: Any, *, metrics: Metrics | None = None, feed: Any = None,
                 max_duration: Callable[[str], float | None] = lambda fid: None, keep_alive: float = 5.0,
                 enabled: bool = True) -> None:
        self.supervisor = supervisor
        self.limits = limits
        self.metrics = metrics
        self.feed = feed  # the dashboard's DashboardFeed (start --dashboard), fed while a page is open
        self.max_duration = max_duration
        self.keep_alive = keep_alive
        self.enabled = enabled
        self.closing = False  # the server is stopping: handed-back connections are closed
        self.plan = SitePlan(Site(routes=None))
        self.transit = 0  # handed-back connections not yet adopted by their protocol (counted in held())
        self.factory: Callable[[bytes], Any] | None = None  # a FrontHttpProtocol for a handed-back connection
        self.counts = metrics.direct if metrics is not None else {"passed": 0, "handed_back": 0, "lost": 0}
        supervisor.on_hand_back = self.hand_back
        supervisor.on_direct_report = self.report
        supervisor.on_direct_lost = self.lost
        supervisor.set_direct_plan(self.plan_for)

    def swap(self, site: Site) -> None:
        """A new ``Site`` (start, SIGHUP): new plan; instances get theirs again (connections they
        hold follow it from their next request)."""
        self.plan = SitePlan.of(site)
        self.supervisor.refresh_direct_plans()

    def plan_for(self, function_id: str) -> dict[str, Any] | None:
        """The plan an instance of ``function_id`` serves passed connections with (the
        ``DIRECT_PLAN`` frame's JSON; see ``runtime.direct``), or None: it gets no connection."""
        plan = self.plan
        if not self.enabled or not plan.eligible or function_id not in plan.functions:
            return None
        limits = self.limits
        return {
            "version": 1, "function": function_id, "routes": plan.routes_for(function_id),
            "exclude": list(plan.exclude),
            "exclude_patterns": [p.pattern for p in plan.patterns],
            "body_limit": plan.site.body_limit, "header_limit": limits.header_limit, "header_count": limits.header_count,
            "header_timeout": limits.header_timeout, "body_timeout": limits.body_timeout, "keep_alive": self.keep_alive,
            "max_duration": self.max_duration(function_id), "public_errors": True,
        }

    def try_pass(self, protocol: Any, data: bytes, end: int) -> Verdict:
        """``data``: what a connection the front serves sent from a request boundary on (its
        first request, or a later one: ``FrontHttpProtocol``), a request head ending at ``end``
        (the index of its blank line). ``Verdict.PASSED``: the connection went to an instance
        (the caller's transport is closed: nothing more to do); ``Verdict.BUSY``: the request
        could go to an instance but none is ready with a free slot (cold, full, its channel's
        buffer full), or this request came with more than ``MAX_PASSED_BYTES`` (a large body: a
        later request may not): the front serves it and may ask again at a later boundary;
        ``Verdict.FRONT``: the front serves it (not plain, not a direct-path function's path,
        the router off) and should not ask again."""
        if not self.enabled:
            return Verdict.FRONT
        if len(data) > MAX_PASSED_BYTES:
            return Verdict.BUSY
        head = parse_first_head(data[:end])
        if (head is None or head.version != b"HTTP/1.1" or head.method not in _METHODS
                or not _plain(head.headers, self.plan.site.body_limit)):
            return Verdict.FRONT
        function = self.plan.function_for(head.path)
        if function is None:
            return Verdict.FRONT
        transport = protocol.transport
        sock = transport.get_extra_info("socket")
        if sock is None:
            return Verdict.FRONT
        if not self.supervisor.pass_connection(function, sock, data):
            return Verdict.BUSY
        if self.factory is None:
            self.factory = protocol.handed_back_factory()
        self.counts["passed"] += 1
        transport.close()  # our descriptor only: the instance holds the connection now
        return Verdict.PASSED

    def held(self) -> int:
        """Client connections instances hold now (passed, not yet closed or handed back: the
        front keeps a duplicate of each socket), counted in ``max_connections``. O(1)."""
        return int(self.supervisor.direct_stats()["open"]) + self.transit

    def arrived(self) -> None:
        """A handed-back connection's protocol took it (``connection_made``): no longer in transit."""
        self.transit = max(0, self.transit - 1)

    def hand_back(self, sock: socket.socket, data: bytes) -> None:
        """An instance gave a passed connection back (``Supervisor.on_hand_back``): serve it
        through uvicorn from ``data`` (a request's first byte onward) for the rest of its life;
        when the server is stopping, answer a request already sent with 503 and close."""
        self.counts["handed_back"] += 1
        if self.closing or self.factory is None:
            _refuse(sock, data)
            return
        loop = asyncio.get_running_loop()
        factory = self.factory
        self.transit += 1  # still one of the server's connections until its protocol takes it
        task = loop.create_task(loop.connect_accepted_socket(lambda: factory(data), sock))
        task.add_done_callback(lambda t: self._adopted(t, sock, data))

    def _adopted(self, task: asyncio.Task[Any], sock: socket.socket, data: bytes) -> None:
        if task.cancelled() or task.exception() is not None:
            self.arrived()  # its protocol never ran connection_made
        _adopt_failed(task, sock, data)

    def lost(self, sock: socket.socket, function_id: str, exc: FnserveError, request: SlotRequest | None = None,
             pid: int | None = None) -> None:
        """The instance holding a passed connection died while a request on it had not started
        its response (``Supervisor.on_direct_lost``; ``sock``: the front's duplicate of the
        client socket; ``request``: what the worker recorded of that request in its slot, or
        None; ``pid``: the instance's): answer what ``FrontApp`` answers for ``exc`` (a
        ``WorkerCrashed``, 502, or a ``DurationExceeded``, 504: production text, no traceback;
        503 ``SHUTTING_DOWN`` when the server is stopping) with the frames path's headers —
        ``date``, the request id the worker gave the request (a fresh one when it left none) in
        ``x-fnserve-request-id`` and the body — then ``connection: close`` and close (what the
        dead worker had read of the connection is gone). Counted, logged (warning + access line
        with the method and path) and fed to the dashboard as ``FrontApp`` does."""
        self.counts["lost"] += 1
        request_id = request.request_id if request is not None and request.request_id else _fresh_id()
        method = request.method if request is not None and request.method else "-"
        target = request.target if request is not None and request.target else "-"
        seconds = max(0.0, (time.monotonic_ns() - request.started_ns) / 1e9) if request is not None else 0.0
        if self.closing:  # killed at the end of the stop's grace period: what Observed answers then
            status, extra = 503, [(b"retry-after", b"1")]
            headers, body = render(503, CUT_OFF_MESSAGE, code="SHUTTING_DOWN")
        else:
            status, extra = exc.status_code or 502, list(exc.headers)
            headers, body = render(status, exc.public_message, request_id=request_id)
            ERROR_LOG.warning("%s %s: %s", method, target.partition("?")[0], exc.message)
        sock_answer = _answer(status, [*headers, *extra, (REQUEST_ID_HEADER, request_id.encode("ascii"))],
                              b"" if method == "HEAD" else body)
        try:
            sock.setblocking(False)
            sock.send(sock_answer)
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        finally:
            sock.close()
        if self.metrics is not None:
            self.metrics.record_request(function_id, status, seconds)
        feed = self.feed
        if feed is not None and feed.listening:
            path, _, query = target.partition("?")
            scope = {"method": method, "path": path, "query_string": query.encode("latin-1")}
            feed.request(scope, status, seconds, function_id, request_id, pid, False if pid is not None else None)
        if ACCESS.isEnabledFor(logging.INFO):
            ACCESS.handle(access_record(request_id, method, target, status, seconds * 1000.0, function_id, pid,
                                        False if pid is not None else None))

    def report(self, function_id: str, pid: int, requests: Iterable[Any]) -> None:
        """The requests an instance served on passed connections (``[request_id, method,
        path_with_query, status, duration_ms]`` each): metrics and access lines as ``FrontApp``
        would have made them."""
        metrics = self.metrics
        logging_on = ACCESS.isEnabledFor(logging.INFO)
        feed = self.feed if self.feed is not None and self.feed.listening else None
        for request_id, method, path, status, duration_ms in requests:
            if metrics is not None:
                metrics.record_request(function_id, int(status), float(duration_ms) / 1000.0)
            if feed is not None:
                scope = {"method": str(method), "path": str(path)}  # the path carries its query already
                feed.request(scope, int(status), float(duration_ms) / 1000.0, function_id, str(request_id), pid, False)
            if logging_on:
                ACCESS.handle(access_record(str(request_id), str(method), str(path), int(status), float(duration_ms),
                                            function_id, pid, False))


_REASONS = {502: b"Bad Gateway", 503: b"Service Unavailable", 504: b"Gateway Timeout"}


def _answer(status: int, headers: Iterable[tuple[bytes, bytes]], body: bytes) -> bytes:
    """A complete HTTP/1.1 answer as uvicorn writes the frames path's (``date`` first, lower-case
    names), ending with ``connection: close``."""
    lines = b"".join(b"%s: %s\r\n" % pair for pair in headers)
    date = formatdate(usegmt=True).encode("ascii")
    return b"HTTP/1.1 %d %s\r\ndate: %s\r\n%sconnection: close\r\n\r\n%s" % (
        status, _REASONS.get(status, b"Error"), date, lines, body)


def _fresh_id() -> str:
    """A request id for a lost request its worker left none for: 16 hex digits, as ``Observed``'s."""
    return os.urandom(8).hex()


def _plain(headers: Iterable[tuple[bytes, bytes]], body_limit: int | None) -> bool:
    lengths = 0
    for name, value in headers:
        if name in _NOT_PLAIN:
            return False
        if name == b"content-length":
            lengths += 1
            if lengths > 1 or not value.isdigit() or len(value) > 18 or (body_limit is not None and int(value) > body_limit):
                return False
    return True


def _shutting_down() -> bytes:
    headers, body = render(503, "the server is shutting down; retry the request", code="SHUTTING_DOWN")
    head = b"".join(b"%s: %s\r\n" % pair for pair in [*headers, (b"retry-after", b"1"), (b"connection", b"close")])
    return b"HTTP/1.1 503 Service Unavailable\r\n" + head + b"\r\n" + body


def _refuse(sock: socket.socket, data: bytes) -> None:
    """Close a handed-back connection; a request already sent on it gets a 503 first."""
    try:
        if data:
            sock.setblocking(False)
            sock.send(_shutting_down())
    except OSError:
        pass
    finally:
        sock.close()


def _adopt_failed(task: asyncio.Task[Any], sock: socket.socket, data: bytes) -> None:
    if task.cancelled() or task.exception() is None:
        return
    LOG.warning("could not serve a connection handed back by an instance: %s", task.exception())
    _refuse(sock, data)
