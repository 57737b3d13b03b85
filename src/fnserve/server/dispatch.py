"""Dispatch a matched request to the function's worker: ``Supervisor.acquire`` then
``server.upstream.forward``, translating worker errors into ``DispatchError`` (SPEC §3.5).

=============================  ======  ==============================================
raised by supervisor/upstream  status  shown in dev
=============================  ======  ==============================================
``FunctionLoadFailed``         500     the import/startup traceback
``FunctionFailed``             500     the app's traceback
``WorkerCrashed``              502     exit status
``WorkerStartTimeout``         503
over ``maxDuration``           504     (the worker is replaced)
other ``WorkerError``          503     (unknown function, shutting down)
=============================  ======  ==============================================

An error raised after the response started is re-raised untouched: the ASGI server then drops
the client connection, which is the only honest signal left.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from fnserve.errors import FunctionFailed, FunctionLoadFailed, WorkerCrashed, WorkerError
from fnserve.project.types import Function
from fnserve.server.app import DispatchError, Receive, Scope, Send
from fnserve.server.upstream import forward

_timeout = getattr(asyncio, "timeout", None)


class SupervisorDispatcher:
    """The ``Dispatcher`` of the front app backed by a ``fnserve.supervisor.Supervisor``.

    ``max_duration``: function id → seconds an HTTP request may run (vercel.json ``maxDuration``)
    or None for no limit. Past it the request answers 504 (or its connection is dropped if the
    response had started) and the function's worker is replaced (SPEC §9).
    """

    def __init__(self, supervisor: Any, max_duration: Callable[[str], float | None] | None = None) -> None:
        self.supervisor = supervisor
        self.max_duration = max_duration
        self._restarts: set[asyncio.Task] = set()  # replacements after a timeout, referenced until done

    async def __call__(self, function: Function, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self.max_duration(function.id) if self.max_duration and scope["type"] == "http" else None
        if not limit:
            await self._forward(function, scope, receive, send)
            return
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            if _timeout is not None:  # Python ≥ 3.11: a timer, no extra task per request
                async with _timeout(limit):
                    await self._forward(function, scope, receive, tracked)
            else:
                await asyncio.wait_for(self._forward(function, scope, receive, tracked), limit)
        except asyncio.TimeoutError:
            task = asyncio.get_running_loop().create_task(self.supervisor.restart([function.id]))
            self._restarts.add(task)
            task.add_done_callback(self._restarts.discard)
            if started:
                raise
            raise DispatchError(
                504, f"{function.id} did not answer within its maxDuration of {limit:g} s",
                "raise maxDuration for it in vercel.json \"functions\" or make it faster; its worker was replaced",
            ) from None

    async def _forward(self, function: Function, scope: Scope, receive: Receive, send: Send) -> None:
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
