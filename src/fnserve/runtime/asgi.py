"""The ASGI adapter: pass-through for ``http`` and ``websocket`` scopes (ASGI 3.0) plus the
instance's lifespan (SPEC §4).

The front server already set ``root_path``/``path`` per layout (SPEC §3.4) and
``scope["fnserve.route_params"]``; this adapter adds ``scope["state"]`` (a shallow copy of the
lifespan state per request, as uvicorn does) and counts in-flight requests so ``shutdown`` lets
background work that runs after the response body (Starlette ``BackgroundTasks``) finish first.
"""

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
        if state:
            scope = dict(scope)
            scope["state"] = state.copy()
        with self.inflight:
            await self.app(scope, receive, send)
