"""The dashboard's event feed (issue 13 item 2): what happened, kept in bounded ring buffers and
pushed to the open dashboard pages as server-sent events.

Three kinds of events (the ``event:`` name of the SSE stream, and the JSON ``data``):

- ``request``: one per request answered by the front app, ``{"t": unix s, "id": request id,
  "method", "path" (with ``?query``), "status" (0: no response), "ms": duration, "function": id or
  ``static``/``redirect``/``-``, "pid": worker pid or null, "cold": bool or null}``;
- ``output``: one line a function printed, ``{"t", "function", "pid", "stream" ("stdout" |
  "stderr"), "line"}``;
- ``message``: one line of fnserve itself (reloads, dependency installs, warnings),
  ``{"t", "level" ("info" | "warning" | "error"), "logger", "msg"}``.

Every event also has ``"n"``, its number (one counter for the three kinds), sent as the SSE ``id``.

Cost (the dashboard must cost nothing measurable when no page is open): requests are recorded (ring
buffer, latency samples, fan-out) only while a page is open. ``fnserve dev`` swaps its front app's
access hook when the first page subscribes and when the last one leaves (``on_listen``), so with no
page open its request path is exactly what it was without a dashboard; ``fnserve start``'s hook
(``observe.AccessLog``) tests ``DashboardFeed.listening``, a plain attribute, once per request. Function output and fnserve's own
messages already cost a log record each; ``FeedHandler`` keeps them in ring buffers always (not the
request path), so a page opened later shows the recent lines.

Subscribers (one per open page) have a bounded queue (``QUEUE_LIMIT`` events): a client that does not
read fast enough is dropped (its stream ends; the browser's ``EventSource`` reconnects and reloads
the state) rather than buffering without bound. Log records may come from other threads (the
output pump, dependency installs in ``asyncio.to_thread``): ring buffers are ``deque``s (appends
are atomic) and the fan-out runs on the event loop (``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from fnserve.runtime.asgitypes import Scope

__all__ = ["FeedHandler", "DashboardFeed", "Subscriber", "QUEUE_LIMIT", "WINDOW", "BUCKET"]

QUEUE_LIMIT = 1000  # events waiting for one page before it is dropped
REQUESTS_KEPT = 500
OUTPUT_KEPT = 1000
MESSAGES_KEPT = 300
SAMPLES_KEPT = 20000  # latency samples per function (the window below bounds them too)
WINDOW = 300.0  # s of latency history (the chart's "last minutes")
BUCKET = 5.0  # s per point of the latency chart

FUNCTION_PREFIX = "fnserve.function."
_ACCESS = "fnserve.access"
_SUPERVISOR = "fnserve.supervisor"
_LEVELS = {logging.DEBUG: "debug", logging.INFO: "info", logging.WARNING: "warning", logging.ERROR: "error",
           logging.CRITICAL: "error"}


class Subscriber:
    """One open page: a bounded queue of encoded SSE events (bytes). ``wake`` is set when there is
    something to send; ``dropped`` when the queue overflowed (the stream then ends)."""

    __slots__ = ("items", "wake", "limit", "dropped")

    def __init__(self, limit: int = QUEUE_LIMIT) -> None:
        self.items: deque[bytes] = deque()
        self.wake = asyncio.Event()
        self.limit = limit
        self.dropped = False

    def push(self, chunk: bytes) -> None:
        """Queue one encoded event (event loop thread only); past ``limit``, drop the client."""
        if self.dropped:
            return
        if len(self.items) >= self.limit:
            self.dropped = True
            self.items.clear()
        else:
            self.items.append(chunk)
        self.wake.set()

    def take(self) -> list[bytes]:
        """Everything queued, oldest first (and clear ``wake``)."""
        items = list(self.items)
        self.items.clear()
        self.wake.clear()
        return items


def encode(kind: str, data: dict[str, Any]) -> bytes:
    """One server-sent event (WHATWG HTML §9.2 "Server-sent events"): ``id: <data["n"]>`` (the
    browser sends it back as ``Last-Event-ID`` when it reconnects), ``event: <kind>`` and
    ``data: <JSON on one line>``."""
    return (b"id: %d\nevent: %s\ndata: %s\n\n"
            % (data["n"], kind.encode("ascii"), json.dumps(data, separators=(",", ":")).encode()))


class DashboardFeed:
    """Ring buffers of recent events and the pages subscribed to them (module docstring).

    ``requests``, ``output``, ``messages``: deques of event dicts, newest last; ``samples``:
    function label → deque of ``(unix s, ms)``; ``function_events``: function id → the last
    ``fnserve.supervisor`` record about it (``{"t", "level", "msg"}``: a worker ready, killed,
    crashed...). ``clock``: unix time source (tests). ``on_listen(listening)``: called when the
    first page subscribes (True) and when the last one leaves (False): ``fnserve dev`` then puts a
    feeding access hook on its front app, and takes it off again (no test at all per request while
    no page is open)."""

    def __init__(self, *, clock: Callable[[], float] = time.time,
                 on_listen: Callable[[bool], None] | None = None) -> None:
        self.clock = clock
        self.on_listen = on_listen
        self.listening = False  # True while a page is subscribed: the request path's one test
        self.requests: deque[dict[str, Any]] = deque(maxlen=REQUESTS_KEPT)
        self.output: deque[dict[str, Any]] = deque(maxlen=OUTPUT_KEPT)
        self.messages: deque[dict[str, Any]] = deque(maxlen=MESSAGES_KEPT)
        self.samples: dict[str, deque[tuple[float, float]]] = {}
        self.function_events: dict[str, dict[str, Any]] = {}
        self.subscribers: set[Subscriber] = set()
        self.handler = FeedHandler(self)
        self._seq = itertools.count(1)  # every event's "n" (next() on a count is atomic under the GIL)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: int | None = None

    # ------------------------------------------------------------------ subscribers
    def subscribe(self, limit: int = QUEUE_LIMIT) -> Subscriber:
        """A new subscriber (call on the event loop); ``listening`` turns True."""
        self._loop = asyncio.get_running_loop()
        self._thread = threading.get_ident()
        sub = Subscriber(limit)
        self.subscribers.add(sub)
        self._set_listening(True)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        """Forget ``sub``; ``listening`` turns False with the last one."""
        self.subscribers.discard(sub)
        self._set_listening(bool(self.subscribers))

    def _set_listening(self, listening: bool) -> None:
        if listening != self.listening:
            self.listening = listening
            if self.on_listen is not None:
                self.on_listen(listening)

    def _publish(self, kind: str, data: dict[str, Any]) -> None:
        """Send one event to every subscriber, from any thread."""
        if not self.subscribers:
            return
        if threading.get_ident() == self._thread:
            self._fanout(encode(kind, data))
        elif self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._fanout, encode(kind, data))
            except RuntimeError:  # the loop closed meanwhile
                pass

    def _fanout(self, chunk: bytes) -> None:
        for sub in list(self.subscribers):
            sub.push(chunk)

    # ------------------------------------------------------------------ recording
    def request(self, scope: Scope, status: int, seconds: float, label: str, request_id: str | None,
                pid: int | None, cold: bool | None) -> None:
        """Record one answered request (``observe.AccessLog`` calls it only while ``listening``).
        ``seconds``: arrival → end of the response; ``label``: function id or ``static``..."""
        now = self.clock()
        ms = seconds * 1000.0
        query = scope.get("query_string")
        path = scope["path"] + ("?" + query.decode("latin-1") if query else "")
        event = {"n": next(self._seq), "t": now, "id": request_id, "method": scope.get("method", "WS"), "path": path, "status": status,
                 "ms": round(ms, 3), "function": label, "pid": pid, "cold": cold}
        self.requests.append(event)
        samples = self.samples.get(label)
        if samples is None:
            samples = self.samples[label] = deque(maxlen=SAMPLES_KEPT)
        samples.append((now, ms))
        self._publish("request", event)

    def output_line(self, function: str, pid: int | None, stream: str | None, line: str, t: float) -> None:
        """Record one line a function printed (``FeedHandler``, any thread)."""
        event = {"n": next(self._seq), "t": t, "function": function, "pid": pid, "stream": stream or "stdout", "line": line}
        self.output.append(event)
        self._publish("output", event)

    def message(self, level: int, logger: str, msg: str, t: float, function: str | None = None) -> None:
        """Record one line of fnserve (``FeedHandler``, any thread). ``function``: the function id a
        ``fnserve.supervisor`` record is about (its first argument), kept in ``function_events``."""
        event = {"n": next(self._seq), "t": t, "level": _LEVELS.get(level, "info"), "logger": logger, "msg": msg}
        self.messages.append(event)
        if function is not None:
            self.function_events[function] = {"t": t, "level": event["level"], "msg": msg}
        self._publish("message", event)

    # ------------------------------------------------------------------ reading
    def latency(self, label: str, now: float | None = None) -> list[list[float]]:
        """The latency chart of one function: ``[[bucket start (unix s), p50 ms, p95 ms, count], ...]``
        for the buckets of ``BUCKET`` s with requests in the last ``WINDOW`` s, oldest first
        (nearest-rank percentiles). Samples older than the window are dropped."""
        samples = self.samples.get(label)
        if not samples:
            return []
        now = self.clock() if now is None else now
        start = now - WINDOW
        while samples and samples[0][0] < start:
            samples.popleft()
        buckets: dict[float, list[float]] = {}
        for t, ms in list(samples):
            buckets.setdefault(t - t % BUCKET, []).append(ms)
        return [[t, _rank(sorted(values), 0.50), _rank(sorted(values), 0.95), len(values)]
                for t, values in sorted(buckets.items())]

    def replay(self, since: int) -> list[bytes]:
        """The kept events after event number ``since`` (0: all), encoded, in order: what a page
        that connects (or reconnects with ``Last-Event-ID``) gets first."""
        found: list[tuple[int, str, dict[str, Any]]] = []
        for kind, ring in (("request", self.requests), ("output", self.output), ("message", self.messages)):
            found.extend((event["n"], kind, event) for event in list(ring) if event["n"] > since)
        found.sort(key=lambda item: item[0])
        return [encode(kind, event) for _, kind, event in found]

    # ------------------------------------------------------------------ logging
    def attach_logging(self) -> None:
        """Put ``handler`` on the ``fnserve`` logger (an entry point's job, as ``logs.install``)."""
        logging.getLogger("fnserve").addHandler(self.handler)

    def detach_logging(self) -> None:
        logging.getLogger("fnserve").removeHandler(self.handler)


def _rank(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list, rounded to µs."""
    index = max(0, min(len(ordered) - 1, int(q * len(ordered) + 0.999999) - 1))
    return round(ordered[index], 3)


class FeedHandler(logging.Handler):
    """A logging handler on the ``fnserve`` logger feeding ``DashboardFeed``: ``fnserve.function.<id>``
    records (``function``, ``pid``, ``stream`` fields) are function output, everything else but
    ``fnserve.access`` is a fnserve message; a ``fnserve.supervisor`` record whose first argument is a
    string (its function id, by that module's convention ``"%s: worker %s ..."``) is also kept as
    that function's last event (how the dashboard tells a crashed function)."""

    def __init__(self, feed: DashboardFeed) -> None:
        super().__init__()
        self.feed = feed

    def emit(self, record: logging.LogRecord) -> None:
        try:
            name = record.name
            if name == _ACCESS:
                return
            fields = record.__dict__
            if name.startswith(FUNCTION_PREFIX):
                function = fields.get("function") or name[len(FUNCTION_PREFIX):]
                self.feed.output_line(str(function), fields.get("pid"), fields.get("stream"), record.getMessage(),
                                      record.created)
                return
            msg = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                msg += f"\n{type(record.exc_info[1]).__name__}: {record.exc_info[1]}"
            args = record.args
            about = args[0] if name == _SUPERVISOR and isinstance(args, tuple) and args and isinstance(args[0], str) \
                else None
            self.feed.message(record.levelno, name, msg, record.created, about)
        except Exception:  # a handler never raises into the code that logged
            self.handleError(record)
