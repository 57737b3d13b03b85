"""Thread pools and in-flight accounting shared by the sync adapters (stdlib only).

Sync kinds (handler, WSGI, lambda) run each request in a bounded ``ThreadPoolExecutor``
(``concurrency`` threads, SPEC §5 default 16) so one slow request does not block the others; the
ASGI server's event loop never runs user code that blocks.
"""

import asyncio
import concurrent.futures
import time
from typing import Callable, Optional


def make_pool(
    concurrency: int, name: str, initializer: Optional[Callable[[], None]] = None
) -> concurrent.futures.ThreadPoolExecutor:
    """A thread pool of ``concurrency`` threads (at least 1) named ``fnserve-<name>``.

    Requests beyond ``concurrency`` wait in the pool's queue; the front server is the one that
    answers 503 when its own queue is full (SPEC §3.5).
    """
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, int(concurrency)),
        thread_name_prefix="fnserve-" + name,
        initializer=initializer,
    )


class InFlight:
    """Counts requests being served so ``shutdown`` can wait for them (SPEC §4, vf-36).

    Only touched from the event loop thread (no lock needed); ``wait`` polls every 10 ms, bounded
    by ``timeout`` seconds, so it never needs an asyncio primitive bound to a particular loop.
    """

    def __init__(self) -> None:
        self.count = 0

    def __enter__(self) -> "InFlight":
        self.count += 1
        return self

    def __exit__(self, *exc: object) -> None:
        self.count -= 1

    async def wait(self, timeout: float) -> bool:
        """Wait until no request is in flight or ``timeout`` seconds passed; True if drained."""
        deadline = time.monotonic() + max(0.0, timeout)
        while self.count > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        return self.count == 0
