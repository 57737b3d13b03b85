"""Front-door limits of both serving commands (issue 10 items 3-4), enforced while uvicorn parses.

``uvicorn_options(config)`` is what ``dev`` and ``start`` add to their ``uvicorn.Config(...)``:
the HTTP protocol class below (httptools, as before) bound to ``FrontLimits`` from the settings,
and uvicorn's own keep-alive timeout. What a client gets:

============================  ==========================================================  ============
limit (setting)               when                                                        answer
============================  ==========================================================  ============
``header_limit`` (64 KiB)     request line + headers bytes, counted as they arrive        431, close
``header_count`` (100)        number of header fields                                     431, close
``header_timeout`` (10 s)     from the connection's (or the next request's) first byte    408, close;
                              until the end of the headers; a connection that sent        silent close
                              nothing is closed silently
``body_timeout`` (30 s)       longest pause between two pieces of a request body          408, close
                              (paused only while fnserve holds reading back itself)       (or close)
``max_connections``           open client connections above it (those passed to           503, close
                              instances on the direct path included)
============================  ==========================================================  ============

Nothing of this reaches a function: a request refused here never takes a function slot. The
limits are checked before httptools buffers a header whole (a 60 MiB header costs one read
past the limit, not seconds of the event loop). ``max_connections`` defaults to the open-file
limit minus a reserve (``open_file_budget``): the soft ``RLIMIT_NOFILE`` is raised to the hard
limit first, and the reserve keeps descriptors for worker sockets, pipes, static files and
logs, so many idle clients make new ones wait for a 503, never make the server drop every new
connection silently (``accept()`` failing with EMFILE). uvicorn's ``limit_concurrency`` is not
used for this: it answers 503 per request but keeps the socket, so the descriptor stays taken.
"""

from __future__ import annotations

import asyncio
import logging
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from fnserve.config import Config
from fnserve.server.coalesce import CoalescedWrites
from fnserve.server.direct import Verdict

if TYPE_CHECKING:
    from fnserve.server.direct import DirectRouter

LOG = logging.getLogger("fnserve.error")

# descriptors kept out of the connection budget: worker sockets and pipes, static files, logs
FD_RESERVE_MIN = 128
FD_RESERVE_SHARE = 0.2
KEEP_ALIVE = 5.0  # seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive)


@dataclass(frozen=True)
class FrontLimits:
    """The front-door limits: ``header_limit`` bytes (request line + headers), ``header_count``
    fields, ``header_timeout`` / ``body_timeout`` seconds, ``max_connections`` open client
    connections."""

    header_limit: int = 65536
    header_count: int = 100
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 10000

    @classmethod
    def from_config(cls, config: Config) -> FrontLimits:
        """The limits of ``config``; an unset ``max_connections`` becomes ``open_file_budget()``
        (which raises the soft open-file limit: call this once, when the server starts)."""
        return cls(config.header_limit, config.header_count, config.header_timeout, config.body_timeout,
                   config.max_connections if config.max_connections is not None else open_file_budget())


def open_file_budget() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (best effort; capped at 2**20) and
    return how many client connections fit below it with a reserve kept for everything else
    (``max(FD_RESERVE_MIN, FD_RESERVE_SHARE * limit)``), at least 1."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = min(hard if hard != resource.RLIM_INFINITY else 1 << 20, 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # e.g. macOS's OPEN_MAX: keep the soft limit
            LOG.debug("could not raise the open-file limit to %d: %s", target, exc)
    limit = soft if soft != resource.RLIM_INFINITY else 1 << 20
    return max(1, limit - max(FD_RESERVE_MIN, int(limit * FD_RESERVE_SHARE)))


def uvicorn_options(limits: FrontLimits, router: DirectRouter | None = None) -> dict[str, Any]:
    """Keyword arguments for ``uvicorn.Config`` that apply ``limits`` (the HTTP protocol class
    and the keep-alive timeout); the caller keeps ``ws``, ``lifespan`` and the rest. ``router``:
    the direct path's (``server.direct``; ``fnserve start``), which may take new connections."""
    return {"http": protocol_for(limits, router), "timeout_keep_alive": KEEP_ALIVE,
            "h11_max_incomplete_event_size": limits.header_limit}


def protocol_for(limits: FrontLimits, router: DirectRouter | None = None) -> type[FrontHttpProtocol]:
    """A ``FrontHttpProtocol`` subclass bound to ``limits`` and ``router`` (uvicorn builds one
    instance per connection from a class it is given)."""
    return type("FrontHttpProtocolBound", (FrontHttpProtocol,), {"limits": limits, "router": router})


class FrontHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of ``FrontLimits`` (module docstring). Use
    ``protocol_for(limits)``; this base class carries the defaults."""

    limits = FrontLimits()
    router: DirectRouter | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # the direct path (server.direct): a new connection's first head, and a later one at a
        # request boundary while the router answered BUSY so far, is held back from the parser
        # until the router has decided whether an instance serves the connection (_at_boundary)
        self._hold = self.router is not None and self.router.enabled
        self._later = False  # ask the router again at the next request boundary
        self._between = True  # the parser was fed nothing since the end of the last request
        self._held = b""
        self._returning = False  # handed back by an instance: admitted already (max_connections)
        self._replay = b""  # a handed-back connection: bytes the instance read and did not serve
        self._in_head = True  # between a request's first byte (or the connection's start) and its headers' end
        self._head_seen = 0  # bytes received while in the head
        self._head_size = 0  # request line + header bytes reported by the parser
        self._head_count = 0
        self._refused: tuple[int, str] | None = None  # status + text to answer instead of uvicorn's 400
        self._head_timer: asyncio.TimerHandle | None = None
        self._body_timer: asyncio.TimerHandle | None = None

    # -- connection
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        # connections passed to instances count too: the front holds a duplicate of each socket
        held = len(self.connections) + (self.router.held() if self.router is not None else 0)
        if self._returning:  # an instance handed it back: counted all along (router.transit until now)
            self._returning = False
            assert self.router is not None
            self.router.arrived()
        elif held > self.limits.max_connections:
            LOG.warning("refused a connection: %d open, over max-connections (%d)", held - 1,
                        self.limits.max_connections)
            self._refuse(503, "Too many open connections; retry later.")
            return
        self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
        if self._replay:
            replay, self._replay = self._replay, b""
            self.data_received(replay)

    def handed_back_factory(self) -> Callable[[bytes], FrontHttpProtocol]:
        """What builds the protocol of a connection an instance hands back (``DirectRouter``):
        one of this class, never passed again, that first parses the bytes given."""
        cls, config, server_state, app_state = type(self), self.config, self.server_state, self.app_state

        def make(data: bytes) -> FrontHttpProtocol:
            proto = cls(config=config, server_state=server_state, app_state=app_state)
            proto._hold = proto._later = False  # no ping-pong
            proto._replay = data
            proto._returning = True
            return proto

        return make

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_timers()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused is not None:
            return
        if self._hold or (self._later and self._between and self._at_boundary()):
            data = self._held + data if self._held else data
            end = data.find(b"\r\n\r\n")
            if end < 0 and len(data) <= self.limits.header_limit:
                self._held = data  # the head is not complete yet
                self._head_seen = len(data)
                return
            self._hold = self._later = False
            self._held = b""
            self._head_seen = 0
            assert self.router is not None
            if end >= 0:
                verdict = self.router.try_pass(self, data, end)
                if verdict is Verdict.PASSED:
                    self._cancel_timers()
                    # counted in router.held() from now on; uvicorn drops it from its set only at
                    # connection_lost, a loop step later: a connection accepted meanwhile must not
                    # see it twice
                    self.connections.discard(self)
                    return  # an instance serves this connection now
                self._later = verdict is Verdict.BUSY
        if self._in_head:
            self._head_seen += len(data)
        super().data_received(data)
        if self._in_head and self._refused is None and self._head_seen > self.limits.header_limit + 4:
            # still no end of headers past the limit (+ the blank line): refuse before httptools buffers more
            self._refuse(431, f"Request headers are over {self.limits.header_limit} bytes.")

    def _at_boundary(self) -> bool:
        """Called with the first bytes after a request ended while the router may take the
        connection (``_later``, ``_between``): True, and the bytes are held as the first head is,
        when nothing of this connection is left on the front — the last response is complete and
        written (the cycle's coalesced writes flushed, the transport's buffer empty: what the
        instance writes cannot overtake it), no request is queued in the pipeline (``_between``:
        not a byte of the next request was fed to the parser) and the connection stays open."""
        cycle = self.cycle
        if cycle is not None:
            if not cycle.response_complete or self.pipeline:
                return False
            writes = cycle.transport
            if isinstance(writes, CoalescedWrites):
                writes.flush()  # what the end of this loop step would write: written now
        transport = self.transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return False  # a client reading slowly: serve this request, ask at the next boundary
        self._hold = True
        self._unset_keepalive_if_required()  # as uvicorn's data_received: a request is coming
        if self._head_timer is None:  # as on_message_begin does
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
        return True

    def handle_websocket_upgrade(self) -> None:
        self._cancel_timers()  # the WebSocket protocol takes the connection over
        super().handle_websocket_upgrade()

    def send_400_response(self, msg: str) -> None:
        if self._refused is not None:  # a limit raised inside a parser callback
            self._write_refusal(*self._refused)
        else:
            super().send_400_response(msg)

    # -- parser callbacks
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._between = False
        self._in_head = True
        self._head_size = self._head_count = 0
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._head_size += len(url)
        if self._head_size > self.limits.header_limit:
            self._fail(431, f"Request line and headers are over {self.limits.header_limit} bytes.")
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        self._head_size += len(name) + len(value) + 4
        if self._head_count > self.limits.header_count:
            self._fail(431, f"More than {self.limits.header_count} request headers.")
        if self._head_size > self.limits.header_limit:
            self._fail(431, f"Request headers are over {self.limits.header_limit} bytes.")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._head_seen = 0
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        super().on_headers_complete()
        if not (self.parser.should_upgrade() and self._should_upgrade()):
            # the new cycle's writes leave in one system call per loop step (issue 14)
            self.cycle.transport = CoalescedWrites(self.transport, self.loop)  # type: ignore[assignment]  # a proxy
            self._arm_body_timer()

    def on_body(self, body: bytes) -> None:
        super().on_body(body)
        self._arm_body_timer()

    def on_message_complete(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None
        self._in_head, self._head_seen = True, 0  # what comes next is the next request's head
        self._between = True
        super().on_message_complete()

    # -- limits
    def _fail(self, status: int, text: str) -> None:
        """Inside a parser callback: make ``feed_data`` fail; ``send_400_response`` answers ``status``."""
        self._refused = (status, text)
        raise httptools.HttpParserCallbackError(text)

    def _refuse(self, status: int, text: str) -> None:
        self._refused = (status, text)
        self._write_refusal(status, text)

    def _write_refusal(self, status: int, text: str) -> None:
        self._cancel_timers()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the app sees http.disconnect and its sends are dropped
            self.cycle.message_event.set()
            if self.cycle.response_started:  # too late for a status: cut the response short
                self.transport.close()
                return
        if self.transport.is_closing():
            return
        body = text.encode("ascii")
        self.transport.write(b"".join([
            STATUS_LINE[status], b"content-type: text/plain; charset=utf-8\r\n",
            b"content-length: %d\r\nconnection: close\r\n\r\n" % len(body), body,
        ]))
        self.transport.close()

    def _cancel_timers(self) -> None:
        for timer in (self._head_timer, self._body_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._body_timer = None

    def _arm_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
        self._body_timer = self.loop.call_later(self.limits.body_timeout, self._body_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # a pipelined request's head is partial while the previous response runs: wait for that one
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)
            return
        if self._head_seen == 0:
            self.transport.close()  # connected and said nothing: no answer is owed
            return
        self._refuse(408, f"Request headers not received within {self.limits.header_timeout:g} s.")

    def _body_timed_out(self) -> None:
        self._body_timer = None
        cycle = self.cycle
        if cycle is None or cycle.response_complete or not cycle.more_body or self.transport.is_closing():
            return
        if self.flow.read_paused or cycle.waiting_for_100_continue:
            self._arm_body_timer()  # fnserve holds reading back (the app is slow), not the client
            return
        self._refuse(408, f"Request body stalled for {self.limits.body_timeout:g} s.")
