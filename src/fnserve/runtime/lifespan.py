"""ASGI lifespan manager: startup once per instance, shutdown when it stops (ASGI 3.0 lifespan
spec 2.0; SPEC §4 **better** than running it per request).

``Lifespan(app)``: ``await startup()`` sends ``lifespan.startup`` and waits for
``lifespan.startup.complete``; ``lifespan.startup.failed`` raises ``LoadError``. An app that raises
or returns before completing startup, or never calls ``receive``, is taken as "no lifespan support"
and served anyway (as uvicorn's ``lifespan="auto"``). ``state`` is the dict passed in the lifespan
scope; request scopes get a shallow copy (as uvicorn does). ``await shutdown(timeout)`` sends
``lifespan.shutdown`` and waits at most ``timeout`` seconds.
"""

import asyncio
import sys
from typing import Any, Dict, List, Optional, Tuple

from .asgitypes import ASGIApp, Message, Scope
from .failures import LoadError


class Lifespan:
    """One app's lifespan conversation. ``supported``: None before startup, then True/False."""

    def __init__(self, app: ASGIApp, label: str = "?", startup_timeout: float = 60.0) -> None:
        self.app = app
        self.label = label
        self.startup_timeout = startup_timeout
        self.state: Dict[str, Any] = {}
        self.supported: Optional[bool] = None
        self._queue: Optional[asyncio.Queue[Message]] = None
        self._task: Optional[asyncio.Task[None]] = None
        #: phase ("startup"/"shutdown") → (completed, failure message)
        self._events: Dict[str, asyncio.Future[Tuple[bool, Optional[str]]]] = {}
        self._error: Optional[BaseException] = None
        self._started = False

    async def startup(self) -> None:
        """Run lifespan startup once; raises ``LoadError`` if the app reports failure."""
        if self._started:
            return
        self._started = True
        loop = asyncio.get_running_loop()
        self._queue = asyncio.Queue()
        self._events = {"startup": loop.create_future(), "shutdown": loop.create_future()}
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": self.state}
        self._task = loop.create_task(self._main(scope))
        self._queue.put_nowait({"type": "lifespan.startup"})
        waiting: List["asyncio.Future[Any]"] = [self._events["startup"], self._task]
        done, _ = await asyncio.wait(waiting, timeout=self.startup_timeout, return_when=asyncio.FIRST_COMPLETED)
        fut = self._events["startup"]
        if fut.done():
            ok, message = fut.result()
            if not ok:
                raise LoadError(
                    "%s: lifespan startup failed: %s" % (self.label, message or "(no message)"),
                    file=self.label,
                    attr=None,
                    found="lifespan.startup.failed",
                    traceback=message or "",
                    hint="fix the application's startup (lifespan) code",
                )
            self.supported = True
            return
        if not done:
            raise LoadError(
                "%s: lifespan startup did not complete within %.0f s" % (self.label, self.startup_timeout),
                file=self.label,
                found="a startup that hangs",
                hint="make the lifespan startup finish, or make it not await forever",
            )
        self.supported = False  # the app returned or raised before completing startup

    async def _main(self, scope: Scope) -> None:
        try:
            await self.app(scope, self._receive, self._send)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # an app without lifespan support often raises here
            self._error = exc
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            if self.supported:
                print("fnserve: %s: lifespan task raised %r" % (self.label, exc), file=sys.stderr)

    async def _receive(self) -> Message:
        assert self._queue is not None
        return await self._queue.get()

    async def _send(self, message: Message) -> None:
        kind = message.get("type", "")
        phase = "startup" if kind.startswith("lifespan.startup.") else "shutdown"
        fut = self._events.get(phase)
        if fut is None or fut.done():
            return
        if kind.endswith(".complete"):
            fut.set_result((True, None))
        elif kind.endswith(".failed"):
            fut.set_result((False, message.get("message", "")))

    async def shutdown(self, timeout: float = 30.0) -> None:
        """Send ``lifespan.shutdown`` and wait up to ``timeout`` seconds (no-op if unsupported)."""
        if not self.supported or self._task is None or self._queue is None:
            return
        self._queue.put_nowait({"type": "lifespan.shutdown"})
        waiting: List["asyncio.Future[Any]"] = [self._events["shutdown"], self._task]
        await asyncio.wait(waiting, timeout=timeout)
        fut = self._events["shutdown"]
        result = fut.result() if fut.done() else None
        if result and not result[0]:
            print("fnserve: %s: lifespan shutdown failed: %s" % (self.label, result[1]), file=sys.stderr)
        if not self._task.done():
            # give the app a moment to return after completing shutdown, then stop waiting
            await asyncio.wait([self._task], timeout=min(1.0, timeout))
            if not self._task.done():
                self._task.cancel()
