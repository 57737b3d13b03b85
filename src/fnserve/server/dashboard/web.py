"""The dashboard's HTTP side: ``DashboardApp``, an ASGI 3 app answering under ``/_fnserve/``.

==================================  ==============================================================
``GET /_fnserve/``                  the page (``assets/index.html``: plain HTML, no build step,
                                    nothing fetched from elsewhere: it works offline)
``GET /_fnserve/dashboard.js``      its one script
``GET /_fnserve/api/state``         the state document (``view.build_state``), JSON
``GET /_fnserve/api/events``        server-sent events (``feed``): the kept events after
                                    ``Last-Event-ID`` (or ``?since=N``; none: all kept), then live
                                    ones; a ``: ping`` comment every 15 s of silence
anything else under ``/_fnserve/``  the ``admin`` app when one is given (health, ready, metrics in
                                    ``fnserve start``), else 404 with the list of endpoints
==================================  ==============================================================

Where it is mounted: ``fnserve dev`` puts it on ``observe.Observed``'s ``admin`` slot (the
``/_fnserve/`` prefix of the main port) unless the project serves something under ``/_fnserve/``
(the project wins, with a warning); ``fnserve start`` only on ``--admin-port`` and only with
``dashboard = true`` (it shows tracebacks and function output).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from importlib import resources
from typing import Any

from fnserve.runtime.asgitypes import ASGIApp, Receive, Scope, Send
from fnserve.server.admin import PREFIX, answer, lifespan_without_state
from fnserve.server.dashboard.feed import DashboardFeed
from fnserve.server.dashboard.view import StateSource, build_state

__all__ = ["DashboardApp", "ENDPOINTS"]

ENDPOINTS = (PREFIX, PREFIX + "api/state", PREFIX + "api/events")
PING_AFTER = 15.0  # s of silence before a keep-alive comment on the event stream
_ASSETS = {  # path → (file under assets/, content type)
    PREFIX: ("index.html", "text/html; charset=utf-8"),
    PREFIX + "index.html": ("index.html", "text/html; charset=utf-8"),
    PREFIX + "dashboard.js": ("dashboard.js", "text/javascript; charset=utf-8"),
}


def asset(name: str) -> bytes:
    """The bytes of ``assets/<name>`` (package data)."""
    return resources.files("fnserve.server.dashboard").joinpath("assets").joinpath(name).read_bytes()


class DashboardApp:
    """The dashboard endpoints (module docstring). ``feed``: the ``DashboardFeed``; ``source``:
    where the state comes from (``view.StateSource``); ``admin``: the app answering the other
    ``/_fnserve/`` paths (``admin.AdminApp``) or None; ``stopping``: returns True once the server
    shuts down (open event streams then end at once instead of holding the graceful shutdown)."""

    def __init__(self, feed: DashboardFeed, source: StateSource, *, admin: ASGIApp | None = None,
                 stopping: Callable[[], bool] = lambda: False) -> None:
        self.feed = feed
        self.source = source
        self.admin = admin
        self.stopping = stopping
        self._assets: dict[str, bytes] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            if self.admin is not None:
                await self.admin(scope, receive, send)
                return
            await lifespan_without_state(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        path = scope["path"]
        ours = path in _ASSETS or path in ENDPOINTS
        if not ours and self.admin is not None:
            await self.admin(scope, receive, send)
        elif scope["method"] not in ("GET", "HEAD"):
            await _json(scope, send, 405, {"error": {"code": "METHOD_NOT_ALLOWED", "message": "only GET and HEAD"}},
                        [(b"allow", b"GET, HEAD")])
        elif path in _ASSETS:
            name, content_type = _ASSETS[path]
            body = self._assets.get(name)
            if body is None:
                body = self._assets[name] = asset(name)
            await answer(scope, send, 200, body, content_type)
        elif path == PREFIX + "api/state":
            await _json(scope, send, 200, build_state(self.source, self.feed))
        elif path == PREFIX + "api/events":
            await self.events(scope, receive, send)
        else:
            await _json(scope, send, 404, {"error": {"code": "NOT_FOUND", "message": f"no endpoint {path}"},
                                           "endpoints": list(ENDPOINTS)})

    async def events(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The server-sent event stream of one page (module docstring). Ends when the client
        leaves, when it reads too slowly (``Subscriber.dropped``: the browser reconnects) or when
        ``stopping()``."""
        feed = self.feed
        sub = feed.subscribe()
        left = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            left.set()
            sub.wake.set()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await send({"type": "http.response.start", "status": 200, "headers": [
                (b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
                (b"x-accel-buffering", b"no")]})
            if scope["method"] == "HEAD":
                await send({"type": "http.response.body", "body": b""})
                return
            first = [b"retry: 1000\n\n", *feed.replay(_since(scope))]
            await send({"type": "http.response.body", "body": b"".join(first), "more_body": True})
            quiet = 0.0
            while not left.is_set() and not self.stopping():
                try:
                    await asyncio.wait_for(sub.wake.wait(), 1.0)
                except asyncio.TimeoutError:
                    quiet += 1.0
                if sub.dropped or left.is_set():
                    break
                items = sub.take()
                if items:
                    quiet = 0.0
                    await send({"type": "http.response.body", "body": b"".join(items), "more_body": True})
                elif quiet >= PING_AFTER:
                    quiet = 0.0
                    await send({"type": "http.response.body", "body": b": ping\n\n", "more_body": True})
            if not left.is_set():
                await send({"type": "http.response.body", "body": b""})
        finally:
            feed.unsubscribe(sub)
            watcher.cancel()


def _since(scope: Scope) -> int:
    """The last event the page has: ``Last-Event-ID`` (a reconnect), else ``?since=N``, else 0."""
    for name, value in scope.get("headers", ()):
        if name == b"last-event-id" and value.isdigit():
            return int(value)
    for part in scope.get("query_string", b"").split(b"&"):
        key, _, value = part.partition(b"=")
        if key == b"since" and value.isdigit():
            return int(value)
    return 0


async def _json(scope: Scope, send: Send, status: int, data: Any,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await answer(scope, send, status, json.dumps(data).encode(), "application/json", headers)
