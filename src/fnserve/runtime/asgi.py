"""The ASGI adapter: pass-through for ``http`` and ``websocket`` scopes (ASGI 3.0) plus the
instance's lifespan (SPEC §4).

The front server sends the full ``path``/``raw_path`` with ``root_path`` set to the EdgeOne
prefix (empty otherwise) and ``scope["fnserve.route_params"]``. When ``root_path`` is set, this
adapter gives the app EdgeOne's form (SPEC §3.4): ``path`` **and** ``raw_path`` are the rest
below the prefix (``/`` when nothing is left), as EdgeOne's runtime does and frameworks that
route on ``raw_path`` (Sanic) need. It also adds ``scope["state"]`` (a shallow copy of the
lifespan state per request, as uvicorn does) and counts in-flight requests so ``shutdown`` lets
background work that runs after the response body (Starlette ``BackgroundTasks``) finish first.
"""

from typing import Any, Dict, Optional
from urllib.parse import quote, unquote_to_bytes

from .asgitypes import ASGIApp, Receive, Scope, Send
from .lifespan import Lifespan
from .pool import InFlight


class ASGIAdapter:
    """ASGI 3 app wrapping the user's ASGI ``app``. ``await startup()`` once before serving
    (raises ``LoadError`` on ``lifespan.startup.failed``); ``await shutdown(timeout)`` waits up to
    ``timeout`` seconds for in-flight requests, then runs lifespan shutdown."""

    def __init__(self, app: ASGIApp, label: str = "?") -> None:
        self.app = app
        self.label = label
        self.lifespan = Lifespan(app, label=label)
        self.inflight = InFlight()

    async def startup(self) -> None:
        await self.lifespan.startup()

    async def shutdown(self, timeout: float = 30.0) -> None:
        await self.inflight.wait(timeout)
        await self.lifespan.shutdown(timeout)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":  # the instance's lifespan is ours; never forward a second one
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            return
        state = self.lifespan.state
        if scope.get("root_path"):
            scope = below_root(scope)
        elif state:
            scope = dict(scope)
        if state:
            scope["state"] = state.copy()
        with self.inflight:
            await self.app(scope, receive, send)


def below_root(scope: Scope) -> Dict[str, Any]:
    """A copy of ``scope`` whose ``path`` and ``raw_path`` are what follows ``root_path`` (SPEC
    §3.4, EdgeOne layout): ``/api/sanic/users`` under ``/api/sanic`` → ``/users``; the prefix
    alone → ``/``. Only at a segment boundary: a path not below ``root_path`` is left whole.
    ``raw_path`` keeps its percent-encoding: the prefix's segments are cut from it when they
    decode to the prefix's, else it is re-encoded from the new ``path``."""
    new = dict(scope)
    root: str = scope["root_path"]
    path: str = scope.get("path") or "/"
    if not path.startswith(root) or path[len(root):len(root) + 1] not in ("", "/"):
        return new
    rest = path[len(root):] or "/"
    new["path"] = rest
    raw = _raw_rest(scope.get("raw_path"), root)
    new["raw_path"] = raw if raw is not None else quote(rest, safe="/:@!$&'()*+,;=-._~").encode("ascii")
    return new


def _raw_rest(raw_path: Optional[bytes], root: str) -> Optional[bytes]:
    """``raw_path`` without the segments of ``root``, or None when they do not match."""
    if not raw_path:
        return None
    wanted = root.strip("/").split("/")
    parts = bytes(raw_path).split(b"/")  # ["", "api", "sanic", "users"]
    if len(parts) <= len(wanted):
        return None
    for want, got in zip(wanted, parts[1:]):
        if unquote_to_bytes(got) != want.encode("utf-8", "surrogateescape"):
            return None
    rest = parts[len(wanted) + 1:]
    return b"/" + b"/".join(rest) if rest else b"/"
