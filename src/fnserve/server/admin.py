"""``/_fnserve/health``, ``/_fnserve/ready`` and ``/_fnserve/metrics`` (issue 6 item 5).

``AdminApp`` is an ASGI 3 app answering only these paths (404 for anything else):

=========================  =====================================================================
``GET /_fnserve/health``   liveness: 200 ``{"status": "alive"}`` while the process runs;
                           with ``?ready`` it is the readiness check below
``GET /_fnserve/ready``    readiness: 200 ``{"status": "ready"}`` when the project is loaded,
                           every function that was tried loaded, and the server is not shutting
                           down; else 503 ``{"status": "draining"}`` (or ``"starting"``, or
                           ``"failed-load"`` with ``"functions": {id: {"failures", "retry_in"}}``:
                           functions whose import or lifespan startup failed and are retried
                           with backoff; the error itself is in the log) with ``Retry-After: 5``
``GET /_fnserve/metrics``  Prometheus text format 0.0.4 (``server.metrics``)
=========================  =====================================================================

It is mounted in front of the project on the main port (``observe.Observed``), unless the
project itself serves something under ``/_fnserve/`` (then only on ``--admin-port``: see
``fnserve.server.start``), and is the whole app of the admin port when one is configured.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from fnserve.runtime.asgitypes import Receive, Scope, Send
from fnserve.server.metrics import CONTENT_TYPE, Metrics

__all__ = ["AdminApp", "PREFIX", "failed_loads", "reserved_conflicts"]

PREFIX = "/_fnserve/"


class AdminApp:
    """The health and metrics endpoints.

    ``state``: a callable returning ``"starting"``, ``"ready"`` or ``"draining"``; ``metrics``: the
    process's ``Metrics``; ``status``: a callable returning ``Supervisor.status()`` (read by
    ``metrics`` only); ``failed``: a callable returning ``Supervisor.failed_loads()`` for readiness
    (default: ``failed_loads(status())``, which walks every function).
    """

    def __init__(self, state: Callable[[], str], metrics: Metrics,
                 status: Callable[[], Mapping[str, Mapping[str, Any]]],
                 failed: Callable[[], Mapping[str, Mapping[str, Any]]] | None = None) -> None:
        self.state = state
        self.metrics = metrics
        self.status = status
        self.failed = failed or (lambda: failed_loads(self.status()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await lifespan_without_state(receive, send)
            return
        if kind != "http":
            await send({"type": "websocket.close", "code": 1008})
            return
        path = scope["path"]
        query = scope.get("query_string", b"")
        if scope["method"] not in ("GET", "HEAD"):
            await _json(scope, send, 405, {"error": {"code": "METHOD_NOT_ALLOWED", "message": "only GET and HEAD"}},
                        [(b"allow", b"GET, HEAD")])
        elif path == PREFIX + "health" and not _has_flag(query, b"ready"):
            await _json(scope, send, 200, {"status": "alive"})
        elif path in (PREFIX + "ready", PREFIX + "health"):
            state = self.state()
            failed = self.failed() if state == "ready" else {}
            if failed:
                await _json(scope, send, 503, {"status": "failed-load", "functions": failed}, [(b"retry-after", b"5")])
            elif state == "ready":
                await _json(scope, send, 200, {"status": "ready"})
            else:
                await _json(scope, send, 503, {"status": state}, [(b"retry-after", b"5")])
        elif path == PREFIX + "metrics":
            text = self.metrics.render(self.status(), self.state() == "ready")
            await answer(scope, send, 200, text.encode(), CONTENT_TYPE)
        else:
            await _json(scope, send, 404, {
                "error": {"code": "NOT_FOUND", "message": f"no endpoint {path}"},
                "endpoints": [PREFIX + "health", PREFIX + "ready", PREFIX + "metrics"],
            })


def failed_loads(status: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Functions of ``Supervisor.status()`` in a failed-load state: id → ``{"failures": int (in a
    row), "retry_in": s or None}`` (no error text: it may hold secrets; it is in the log)."""
    return {fid: {"failures": info.get("load_failures", 0), "retry_in": info.get("retry_in")}
            for fid, info in status.items() if info.get("load_error")}


def _has_flag(query: bytes, name: bytes) -> bool:
    """True when ``name`` is a parameter of the query string (``ready``, ``ready=1``)."""
    return any(part.split(b"=", 1)[0] == name for part in query.split(b"&")) if query else False


async def _json(scope: Scope, send: Send, status: int, data: Any,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await answer(scope, send, status, (json.dumps(data) + "\n").encode(), "application/json", headers)


async def lifespan_without_state(receive: Receive, send: Send) -> None:
    """Answer an ASGI 3.0 ``lifespan`` conversation of an app with nothing to start or stop:
    ``startup.complete``, then ``shutdown.complete`` and return (used by the admin endpoints and
    the dashboard)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def answer(scope: Scope, send: Send, status: int, body: bytes, content_type: str,
                  headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """Send one whole response (ASGI 3.0 ``http.response.start`` + one ``http.response.body``):
    ``status``, ``body`` bytes (none for HEAD), ``content_type``, ``cache-control: no-store``,
    then ``headers``. The admin endpoints and the dashboard answer through it."""
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"no-store"),
            *(headers or []),
        ],
    })
    await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body})


def reserved_conflicts(project: Any, root: Path) -> list[str]:
    """What the project serves under ``/_fnserve/``: route patterns (``project.routes.routes``) and
    ``public/_fnserve/`` when it exists (``root``: the project folder). The project wins there on the
    main port (``fnserve start``'s endpoints, ``fnserve dev``'s dashboard are not mounted)."""
    found = [r.pattern for r in project.routes.routes
             if (r.static_prefix + "/").startswith(PREFIX) or r.pattern.startswith(PREFIX)]
    if (root / "public" / PREFIX.strip("/")).exists():
        found.append(f"public{PREFIX}")
    return found
