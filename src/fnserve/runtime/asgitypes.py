"""The ASGI 3.0 type aliases, defined once for the whole package (stdlib only, Python 3.9+).

The names follow the ASGI 3.0 specification ("Applications"): an application is
``async def app(scope, receive, send)``; ``scope`` is the connection's mapping (``type``,
``path``, ``headers`` ...); ``receive()`` awaits the next event message from the client;
``send(message)`` sends one event message to it. The front server (``fnserve.server``), the
supervisor and the runtime inside a function's worker all import them from here.
"""

from typing import Any, Awaitable, Callable, MutableMapping

__all__ = ["ASGIApp", "Message", "Receive", "Scope", "Send"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
