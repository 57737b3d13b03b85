"""Dispatch a matched request to the function's worker: ``Supervisor.acquire`` then
``server.upstream.forward``, translating worker errors into ``DispatchError`` (SPEC §3.5).

=============================  ======  ==============================================
raised by supervisor/upstream  status  shown in dev
=============================  ======  ==============================================
``FunctionLoadFailed``         500     the import/startup traceback
``FunctionFailed``             500     the app's traceback
``WorkerCrashed``              502     exit status
``WorkerStartTimeout``         503
other ``WorkerError``          503     (unknown function, shutting down)
=============================  ======  ==============================================

An error raised after the response started is re-raised untouched: the ASGI server then drops
the client connection, which is the only honest signal left.
"""

from __future__ import annotations

from typing import Any

from fnserve.errors import FunctionFailed, FunctionLoadFailed, WorkerCrashed, WorkerError
from fnserve.project.types import Function
from fnserve.server.app import DispatchError, Receive, Scope, Send
from fnserve.server.upstream import forward


class SupervisorDispatcher:
    """The ``Dispatcher`` of the front app backed by a ``fnserve.supervisor.Supervisor``."""

    def __init__(self, supervisor: Any) -> None:
        self.supervisor = supervisor

    async def __call__(self, function: Function, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            connection = await self.supervisor.acquire(function)
            await forward(connection, scope, receive, send)
        except FunctionLoadFailed as exc:
            raise DispatchError(500, f"{function.id} failed to load: {_first_line(exc)}", exc.traceback or None) from exc
        except FunctionFailed as exc:
            if exc.response_started:
                raise
            raise DispatchError(500, exc.message, exc.traceback or None) from exc
        except WorkerCrashed as exc:
            if exc.response_started:
                raise
            raise DispatchError(502, exc.message, exc.hint) from exc
        except WorkerError as exc:
            raise DispatchError(getattr(exc, "status_code", 503), exc.message, exc.hint) from exc


def _first_line(exc: FunctionLoadFailed) -> str:
    err = exc.load_error
    text = getattr(err, "message", None) or str(err)
    return text.strip().splitlines()[0] if text.strip() else "unknown error"
