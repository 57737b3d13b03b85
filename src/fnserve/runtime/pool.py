"""Thread pools and in-flight accounting shared by the sync adapters (stdlib only).

Sync kinds (handler, WSGI, lambda) run each request in a bounded ``ThreadPoolExecutor``
(``concurrency`` threads, SPEC §5 default 16) so one slow request does not block the others; the
ASGI server's event loop never runs user code that blocks.
"""

import asyncio
import queue
import sys
import threading
import time
import traceback
from typing import Any, Callable, List, Optional, Tuple

#: One queued work item: ``(fn, args)``, or None to stop a thread.
_Work = Optional[Tuple[Callable[..., Any], Tuple[Any, ...]]]


class ThreadPool:
    """A bounded pool of daemon threads fed by a ``queue.SimpleQueue`` (cheaper per request than
    ``concurrent.futures.ThreadPoolExecutor``: no Future, no Python-level condition per item).

    ``size``: max threads (at least 1), started lazily when every thread is busy; ``name``: thread
    name suffix; ``initializer``: run once in each new thread. ``submit(fn, *args)`` is
    fire-and-forget (``fn`` reports its own result; an exception escaping it is printed to
    stderr); ``run(loop, fn, *args)`` returns an asyncio future for the result. Work beyond
    ``size`` waits in the queue; the front server answers 503 when its own queue is full.
    """

    def __init__(self, size: int, name: str, initializer: Optional[Callable[[], None]] = None) -> None:
        self.size = max(1, int(size))
        self.name = name
        self._initializer = initializer
        self._queue: "queue.SimpleQueue[_Work]" = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: List[threading.Thread] = []
        self._pending = 0  # queued + running items
        self._closed = False

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the thread pool %s is shut down" % self.name)
            self._pending += 1
            spawn = self._pending > len(self._threads) and len(self._threads) < self.size
            if spawn:
                thread = threading.Thread(
                    target=self._work, name="fnserve-%s-%d" % (self.name, len(self._threads)), daemon=True
                )
                self._threads.append(thread)
        self._queue.put((fn, args))
        if spawn:
            thread.start()

    def run(self, loop: asyncio.AbstractEventLoop, fn: Callable[..., Any], *args: Any) -> "asyncio.Future[Any]":
        """Run ``fn(*args)`` in the pool; the returned future (of ``loop``) gets its result."""
        future = loop.create_future()

        def call() -> None:
            result: Any = None
            error: Optional[BaseException] = None
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to the awaiting coroutine
                error = exc
            try:
                loop.call_soon_threadsafe(_settle, future, result, error)
            except RuntimeError:  # the loop is closed: nobody waits for the result any more
                pass

        self.submit(call)
        return future

    def _work(self) -> None:
        if self._initializer is not None:
            self._initializer()
        get = self._queue.get
        while True:
            item = get()
            if item is None:
                return
            fn, args = item
            try:
                fn(*args)
            except BaseException:
                sys.stderr.write("fnserve: pool %s: %s" % (self.name, traceback.format_exc()))
            finally:
                with self._lock:
                    self._pending -= 1

    def shutdown(self, wait: bool = False) -> None:
        """Stop the threads once the queued work is done; ``wait``: join them."""
        with self._lock:
            self._closed = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:
            for thread in threads:
                thread.join()


def _settle(future: "asyncio.Future[Any]", result: Any, error: Optional[BaseException]) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def make_pool(concurrency: int, name: str, initializer: Optional[Callable[[], None]] = None) -> ThreadPool:
    """The thread pool of one function instance: ``concurrency`` threads (SPEC §5 default 16)."""
    return ThreadPool(concurrency, name, initializer)


class InFlight:
    """Counts requests being served so ``shutdown`` can wait for them (SPEC §4, vf-36).

    ``enter()`` on the loop when a request starts; ``exit()`` from whichever thread finishes it
    last (a sync adapter's worker thread may still run ``close()`` or the rest of a handler after
    the response's last byte went out). ``with inflight:`` does both on one thread. ``wait``
    polls every 10 ms, bounded by ``timeout`` seconds (no asyncio primitive tied to one loop).
    """

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def enter(self) -> None:
        with self._lock:
            self.count += 1

    def exit(self) -> None:
        with self._lock:
            self.count -= 1

    def __enter__(self) -> "InFlight":
        self.enter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.exit()

    async def wait(self, timeout: float) -> bool:
        """Wait until no request is in flight or ``timeout`` seconds passed; True if drained."""
        deadline = time.monotonic() + max(0.0, timeout)
        while self.count > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.count == 0
