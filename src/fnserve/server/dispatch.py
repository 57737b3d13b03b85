"""Dispatch a matched request to the function's worker: ``Supervisor.serve`` with
``server.upstream.forward`` (SPEC §3.5, §9).

The supervisor enforces the function's limits for both ``fnserve dev`` and ``fnserve start``
(``maxDuration`` → ``DurationExceeded`` 504, its instance killed; ``memory`` →
``MemoryExceeded`` 502). What it raises carries its HTTP status (``fnserve.errors``):

=============================  ======  ==============================================
raised by supervisor/upstream  status  shown in dev
=============================  ======  ==============================================
``FunctionLoadFailed``         500     the import/startup traceback
``FunctionFailed``             500     the app's traceback
``WorkerCrashed``              502     exit status
``MemoryExceeded``             502     (its instance replaced)
``WorkerStartTimeout``         503
``Overloaded``                 503     (queue full; ``Retry-After``)
``DurationExceeded``           504     (its instance killed)
other ``WorkerError``          503     (unknown function, shutting down)
=============================  ======  ==============================================

The front app (``server.app``) renders them; one raised after the response started is re-raised
untouched: the ASGI server then drops the client connection, the only honest signal left.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from fnserve.project.types import Function
from fnserve.runtime.asgitypes import Receive, Scope, Send
from fnserve.server.upstream import forward


class SupervisorDispatcher:
    """The ``Dispatcher`` of the front app backed by a ``fnserve.supervisor.Supervisor`` (or
    anything with its ``serve(function, scope, receive, send, forward)``, such as
    ``observe.ObservedSupervisor``). ``on_lease``: passed to ``Supervisor.serve`` (called with each
    ``Lease`` before the request is forwarded: ``observe.note_lease`` in ``dev``). Raises what
    ``Supervisor.serve`` raises."""

    __slots__ = ("supervisor", "_serve")

    def __init__(self, supervisor: Any, on_lease: Callable[[Any], None] | None = None) -> None:
        self.supervisor = supervisor
        self._serve: Callable[..., Awaitable[None]] = (
            supervisor.serve if on_lease is None else functools.partial(supervisor.serve, on_lease=on_lease))

    def __call__(self, function: Function, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        return self._serve(function, scope, receive, send, forward)  # the awaitable itself: no coroutine of its own
