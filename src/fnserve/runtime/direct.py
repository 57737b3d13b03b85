"""The worker's HTTP/1.1 server for client connections the front passed it (the direct path).

docs/ARCHITECTURE.md "direct path": the front accepts a client connection, reads its first request
head and, when that request goes straight to this function, passes the socket and the bytes it read
over a SOCK_SEQPACKET channel (``DIRECT_MAX_PACKET`` bytes a packet)::

    front → worker  b"C" + conn_id (u64 BE) + data, one fd      a connection to serve
    worker → front  b"H" + conn_id + data, one fd               hand-back: the front serves the rest
    worker → front  b"X" + conn_id                              the worker closed the connection
    front → worker  b"R" + conn_id                              reclaim: hand it back if idle

``R`` (the front has requests waiting for a slot of this function): a connection at a request
boundary (no exchange, not closing, no body bytes owed) is handed back at once (``H``, with the
bytes of a next request already read, if any); a busy one or an unknown ``conn_id`` is ignored
(its lease stays counted until it ends; the front asks again while requests wait).

``DirectServer`` serves such connections: pure Python, stdlib only, one non-blocking socket per
connection read with ``loop.add_reader`` (no asyncio transport: the socket must be handed back with
exactly the bytes read and not served). It serves only *plain* requests (HTTP/1.1, a method token,
an origin-form target, no ``Upgrade``/``Expect``/``Transfer-Encoding``, one valid ``Content-Length``
within ``body_limit``, a clean head within ``header_limit``/``header_count``, a path that is not in
``exclude`` and that the route trie gives to this function); for anything else it hands the
connection back starting at that request's first byte, once the previous response is fully
written. Requests on a connection are served in order (pipelining); the app gets the same scope
the frames path gives it (``server.app.function_scope`` behind ``observe.Observed``). Responses:
``date``, the app's headers, ``x-fnserve-request-id``, chunked when the app gives no length; error
answers in the front's JSON shape (``ERROR_STRINGS``, checked against the front's in the tests).

Timers (the plan's seconds): ``keep_alive`` idle connection → closed silently; a started head not
complete in ``header_timeout`` → the front's 408 and close; ``body_timeout`` waiting for
body bytes → 408 and close; ``max_duration`` → 504, close, ``EXPIRED`` (the instance is replaced).
One sweep every ``TICK`` s checks them all. A ``REPORT`` control frame carries the finished requests
``[request_id, method, path_with_query, status, duration_ms]`` (status 0: no response), batched
every ``REPORT_EVERY`` s / ``REPORT_BATCH`` requests.
"""

import asyncio
import errno
import os
import re
import socket
import sys
import time
import traceback
from collections import deque
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

from .asgitypes import ASGIApp
from .frames import EXPIRED, REPORT
from .h1conn import DIRECT_MAX_PACKET, H1Conn
from .h1exchange import ERROR_STRINGS, REPORT_BATCH, Exchange, render_error, runtime_error
from .routetrie import RouteTrie
from .slotwriter import SlotWriter

__all__ = ["DIRECT_MAX_PACKET", "ERROR_STRINGS", "DirectPlan", "DirectServer", "render_error", "runtime_error"]

TICK = 0.1  # s between timer sweeps
REPORT_EVERY = 0.1  # s
ROUTE_CACHE = 1024  # paths whose route decision is kept (per plan)

class DirectPlan:
    """The plan (docs/ARCHITECTURE.md "direct path" §3) as the server uses it: ``function`` id,
    the route ``trie`` of every route (payload: the route's dict), ``exclude`` paths and prefixes,
    limits (bytes, counts) and timeouts (seconds). Raises ``KeyError``/``ValueError``/``TypeError``
    for a malformed plan."""

    __slots__ = ("function", "trie", "exact", "prefixes", "body_limit", "header_limit", "header_count",
                 "header_timeout", "keep_alive", "body_timeout", "max_duration", "public_errors", "_cache", "lines",
                 "max_requests", "max_failures", "patterns")

    def __init__(self, data: Dict[str, Any]) -> None:
        self.function = str(data["function"])
        self.trie: RouteTrie[Dict[str, Any]] = RouteTrie()
        for route in data.get("routes") or ():
            self.trie.insert([(str(k), str(v)) for k, v in route["segments"]], bool(route.get("mount")), route,
                             str(route.get("root_path") or ""))
        exclude = [str(e) for e in data.get("exclude") or ()]
        try:  # vercel.json rule sources (fnserve's path patterns as Python regexes): what they match goes back
            self.patterns = tuple(re.compile(str(p), re.DOTALL) for p in data.get("exclude_patterns") or ())
        except re.error as exc:
            raise ValueError("bad exclude pattern: %s" % exc) from exc
        # an entry ending with "/" is a prefix, except "/" itself (a public/index.html): only "/"
        self.prefixes = tuple(e for e in exclude if len(e) > 1 and e.endswith("/"))
        self.exact = frozenset(e for e in exclude if e not in self.prefixes)
        limit = data.get("body_limit")
        self.body_limit: Optional[int] = None if limit is None else int(limit)
        self.header_limit = int(data.get("header_limit", 65536))
        self.header_count = int(data.get("header_count", 100))
        self.header_timeout = float(data.get("header_timeout", 10.0))
        self.keep_alive = float(data.get("keep_alive", 5.0))
        self.body_timeout = float(data.get("body_timeout", 30.0))
        duration = data.get("max_duration")
        self.max_duration: Optional[float] = None if duration is None else float(duration)
        self.public_errors = bool(data.get("public_errors", True))
        # requests / consecutive failed requests this instance may still serve before the supervisor
        # replaces it (max_requests, max_failures; None: no limit): then it hands connections back
        budget, failures = data.get("max_requests"), data.get("max_failures")
        self.max_requests: Optional[int] = None if budget is None else int(budget)
        self.max_failures: Optional[int] = None if failures is None else int(failures)
        self._cache: Dict[str, Optional[Tuple[Dict[str, Any], Dict[str, str], str]]] = {}
        self.lines: Dict[bytes, Any] = {}  # request line → its parse (h1conn.LINE_CACHE entries at most)

    def route(self, path: str) -> Optional[Tuple[Dict[str, Any], Dict[str, str], str]]:
        """``(route, params, root_path)`` when ``path`` is this function's, else None. The
        answers for the last ``ROUTE_CACHE`` distinct paths are kept (``params``: copy it before
        changing it)."""
        try:
            return self._cache[path]
        except KeyError:
            pass
        found = self._route(path)
        if len(self._cache) >= ROUTE_CACHE:
            self._cache.clear()
        self._cache[path] = found
        return found

    def _route(self, path: str) -> Optional[Tuple[Dict[str, Any], Dict[str, str], str]]:
        # static lookups drop empty segments (//static/x, /favicon.ico/): compare that form too
        norm = "/" + "/".join(s for s in path.split("/") if s)
        for candidate in (path, norm) if norm != path else (path,):
            if candidate in self.exact or (self.prefixes and (candidate.startswith(self.prefixes)
                                                              or candidate + "/" in self.prefixes)):
                return None
        for pattern in self.patterns:  # "/" also matches a pattern that matches "" (project.pathpattern)
            if pattern.fullmatch(path) is not None or (path == "/" and pattern.fullmatch("") is not None):
                return None
        found = self.trie.lookup(path)
        if found is None:
            return None
        leaf, captured = found
        route = leaf.payload
        if route.get("function") != self.function:
            return None
        return route, dict(zip(leaf.names, captured)), leaf.root_path


class DirectServer:
    """Serves the connections passed over ``channel`` (a connected SOCK_SEQPACKET socket, or None
    for tests calling ``adopt``) with ``app`` (ASGI 3). ``control(ftype, obj)`` sends a frames
    control frame (``REPORT``, ``EXPIRED``); ``on_error(exc)`` logs what the app raised (default:
    the traceback to stderr). ``set_plan(dict)`` installs a plan (until then every connection is
    handed straight back); ``stop()`` stops adopting and hands connections back (idle ones at
    once, busy ones after their response); ``await wait_idle(timeout)``; ``close()``.
    ``inflight``: app calls in progress."""

    def __init__(self, app: ASGIApp, channel: Optional[socket.socket], control: Callable[[int, Any], None],
                 on_error: Optional[Callable[[BaseException], None]] = None) -> None:
        self.loop = asyncio.get_running_loop()
        self.app = app
        self.channel = channel
        self.control = control
        self.on_error = on_error or _print_traceback
        self.plan: Optional[DirectPlan] = None
        self.exhausted = False  # served its max_requests / max_failures: it hands every connection back
        self.failures = 0  # consecutive failed requests (status >= 500 or none)
        self.served_elsewhere: Callable[[], int] = lambda: 0  # requests the instance served over frames
        self.urgent: Callable[[], None] = lambda: None  # writes the queued control frames now
        self.slots: Optional[SlotWriter] = None  # the front's slot table (packet M), before any connection
        self.conns: Dict[int, H1Conn] = {}
        self.tasks: Set["asyncio.Task[None]"] = set()  # app calls in progress
        self.served = 0  # requests finished (reported)
        self.stopping = False
        self._out: Deque[Tuple[bytes, Optional[socket.socket]]] = deque()
        self._writer = False
        self.reports: List[Tuple[str, str, bytes, int, float]] = []  # finished requests not sent yet
        self.report_timer: Optional[asyncio.TimerHandle] = None
        self._sweeper: Optional[asyncio.TimerHandle] = None
        self.clock = time.monotonic()  # coarse: updated by the sweep (deadlines are ± TICK)
        self._date_second = 0
        self.date = b""  # the date header line, updated by the sweep once a second (as uvicorn)
        self._tick_date()
        self.idle_waiters: Set["asyncio.Future[None]"] = set()
        self._heads: List[Exchange] = []  # responses started in this loop step, head not written yet
        if channel is not None:
            channel.setblocking(False)
            self.loop.add_reader(channel.fileno(), self._channel_readable)

    @property
    def inflight(self) -> int:
        """App calls in progress (the worker's heartbeat adds them to its own)."""
        return len(self.tasks)

    # -- plan, channel
    def set_plan(self, data: Dict[str, Any]) -> None:
        """Install or replace the plan; connections in progress use it from their next request.
        Raises ``KeyError``/``ValueError``/``TypeError`` for a malformed plan (the old one stays)."""
        plan = self.plan = DirectPlan(data)
        if self._spent(plan):
            self.exhausted = True

    def count(self, status: int) -> bool:
        """A request finished with ``status`` (0: none; failures are statuses >= 500 in a row, as the
        supervisor counts them; its row is in ``reports``): True when it was the last one this
        instance serves (its plan's ``max_requests``, counted over both paths, or
        ``max_failures``): the reports leave now, so the supervisor replaces it before the next
        request, and every connection is handed back at its next request."""
        self.failures = self.failures + 1 if status >= 500 else 0
        plan = self.plan
        if self.exhausted or plan is None or not (self._spent(plan) or (
                plan.max_failures and self.failures >= plan.max_failures)):
            return False
        self.exhausted = True
        self.flush_reports()
        self.urgent()
        return True

    def _spent(self, plan: DirectPlan) -> bool:
        limit = plan.max_requests
        return limit is not None and self.served + len(self.reports) + self.served_elsewhere() >= limit

    def _channel_readable(self) -> None:
        channel = self.channel
        assert channel is not None
        for _ in range(64):
            try:
                data, fds, _flags, _addr = socket.recv_fds(channel, DIRECT_MAX_PACKET, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data, fds = b"", []
            if not data and not fds:  # the front closed the channel: nothing more to adopt
                self.loop.remove_reader(channel.fileno())
                return
            for extra in fds[1:]:
                os.close(extra)
            if data[:1] == b"M" and len(data) == 5 and fds:  # the slot table (runtime.slotwriter)
                try:
                    slots = SlotWriter(fds[0], int.from_bytes(data[1:5], "big"))
                except (OSError, ValueError) as exc:
                    _log("cannot map the direct path's slot table: %s" % exc)
                    continue
                if self.slots is not None:
                    self.slots.close()
                self.slots = slots
                continue
            if data[:1] == b"R":  # reclaim (module docstring): never carries a descriptor
                for fd in fds[:1]:
                    os.close(fd)
                if len(data) == 9:
                    self.reclaim(int.from_bytes(data[1:9], "big"))
                continue
            if data[:1] == b"C" and len(data) >= 9 and not fds:
                # its descriptor did not arrive (no free descriptor here: EMFILE): the front
                # serves the connection with its own copy
                self.send_packet(b"H" + data[1:])
                continue
            if data[:1] != b"C" or len(data) < 9 or not fds:
                if fds:
                    os.close(fds[0])
                continue
            self.adopt(int.from_bytes(data[1:9], "big"), socket.socket(fileno=fds[0]), data[9:])

    def reclaim(self, conn_id: int) -> bool:
        """Packet ``R``: hand connection ``conn_id`` back now if it is idle (at a request boundary,
        see ``stop``), with the unread bytes of a next request if some came. True if it was;
        False for a busy or unknown connection (ignored)."""
        conn = self.conns.get(conn_id)
        if conn is None or not _at_boundary(conn):
            return False
        conn.hand_back()
        return True

    def send_packet(self, packet: bytes, sock: Optional[socket.socket] = None) -> None:
        """Queue an H (with ``sock``, closed here once sent) or X packet to the front; never dropped
        while the channel works (EAGAIN: retried when it is writable)."""
        if self.channel is None:
            if sock is not None:
                sock.close()
            return
        self._out.append((packet, sock))
        if not self._writer:
            self._flush_packets()

    def _flush_packets(self) -> None:
        channel = self.channel
        assert channel is not None
        out = self._out
        while out:
            packet, sock = out[0]
            try:
                if sock is not None:
                    socket.send_fds(channel, [packet], [sock.fileno()])
                else:
                    channel.send(packet)
            except (BlockingIOError, InterruptedError, socket.timeout):
                if channel.gettimeout() is None or channel.gettimeout() == 0.0:
                    if not self._writer:
                        self._writer = True
                        self.loop.add_writer(channel.fileno(), self._flush_packets)
                else:
                    _log("the front did not take %d direct packet(s) at exit; those connections are dropped" % len(out))
                return
            except OSError as exc:
                if exc.errno == errno.ENOBUFS:
                    self.loop.call_later(0.01, self._flush_packets)
                    return
                _log("direct channel to the front failed: %s; %d connection(s) dropped" % (exc, len(out)))
                while out:
                    dropped = out.popleft()[1]
                    if dropped is not None:
                        dropped.close()
                break
            out.popleft()
            if sock is not None:
                sock.close()
        if self._writer:
            self._writer = False
            self.loop.remove_writer(channel.fileno())

    # -- connections
    def adopt(self, conn_id: int, sock: socket.socket, data: bytes) -> None:
        """Serve the client connection ``sock`` whose first bytes ``data`` the front already read;
        handed straight back when there is no plan yet or the server is stopping."""
        if self.plan is None or self.stopping or self.exhausted or conn_id in self.conns:
            self.send_packet(b"H" + conn_id.to_bytes(8, "big") + data, sock)
            return
        conn = H1Conn(self, conn_id, sock, data)
        self.conns[conn_id] = conn
        if self._sweeper is None:
            self.clock = time.monotonic()
            self._tick_date()
            self._sweeper = self.loop.call_later(TICK, self._sweep)
        conn.start()

    def _sweep(self) -> None:
        now = self.clock = time.monotonic()
        self._tick_date()
        for conn in list(self.conns.values()):
            conn.check(now)
        self._sweeper = self.loop.call_later(TICK, self._sweep) if self.conns else None

    def _tick_date(self) -> None:
        now = int(time.time())
        if now != self._date_second:
            self._date_second = now
            self.date = b"date: " + http_date(now) + b"\r\n"

    def head_pending(self, exchange: Exchange) -> None:
        """``exchange``'s response started: its head is written at the end of this loop step,
        unless its body came in the same step (then both leave in one write)."""
        self._heads.append(exchange)
        if len(self._heads) == 1:
            self.loop.call_soon(self._flush_heads)

    def _flush_heads(self) -> None:
        heads, self._heads = self._heads, []
        for exchange in heads:
            if exchange.head_pending:
                exchange.flush_head()

    def reported(self) -> None:
        """``reports`` got a row (``Exchange.finish_report``: ``(request_id, method, target bytes,
        status, duration s)``): send the batch when full, else make sure a timer sends it."""
        if len(self.reports) >= REPORT_BATCH:
            self.flush_reports()
        elif self.report_timer is None:
            self.report_timer = self.loop.call_later(REPORT_EVERY, self.flush_reports)

    def flush_reports(self) -> None:
        """Send the pending ``REPORT`` batch now (also called when stopping): rows
        ``[request_id, method, path_with_query, status, duration_ms]``, status 0: no response."""
        if self.report_timer is not None:
            self.report_timer.cancel()
            self.report_timer = None
        if self.reports:
            rows, self.reports = self.reports, []
            self.served += len(rows)
            self.control(REPORT, {"requests": [[rid, method, target.decode("latin-1"), status, round(took * 1000, 3)]
                                               for rid, method, target, status, took in rows]})

    def expired(self, limit: float) -> None:
        self.flush_reports()  # the 504's row first: EXPIRED gets this instance killed
        self.control(EXPIRED, {"limit": limit})

    def forget(self, conn: H1Conn) -> None:
        self.conns.pop(conn.conn_id, None)
        self.check_idle()

    def check_idle(self) -> None:
        if not self.conns and not self.tasks:
            for waiter in self.idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)

    # -- stopping
    def stop(self) -> None:
        """STOP: adopt nothing more, hand back idle connections now and busy ones after their
        current response."""
        self.stopping = True
        for conn in list(self.conns.values()):
            if _at_boundary(conn):
                conn.hand_back()  # the others go back (or close) when they reach one

    async def wait_idle(self, timeout: float) -> None:
        """Wait up to ``timeout`` s until no connection and no app call is left."""
        if not self.conns and not self.tasks:
            return
        waiter = self.loop.create_future()
        self.idle_waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            self.idle_waiters.discard(waiter)

    def close(self) -> None:
        """Close every connection left (X packets), cancel the app calls still running, send the
        last reports, stop reading the channel."""
        for conn in list(self.conns.values()):
            if conn.exchange is not None:
                conn.exchange.cut_off()
            conn.close()
        for task in list(self.tasks):
            task.cancel()
        self.flush_reports()
        channel = self.channel
        if channel is not None:
            try:
                self.loop.remove_reader(channel.fileno())
            except (ValueError, OSError):
                pass
            if self._out:  # packets the front did not take yet: give it a second, blocking
                if self._writer:
                    self._writer = False
                    self.loop.remove_writer(channel.fileno())
                channel.settimeout(1.0)
                try:
                    self._flush_packets()
                finally:
                    channel.setblocking(False)


_DAYS = (b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun")
_MONTHS = (b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec")


def http_date(seconds: float) -> bytes:
    """An IMF-fixdate (RFC 9110 §5.6.7), as ``email.utils.formatdate(usegmt=True)`` writes it,
    without importing ``email`` (locale-independent)."""
    t = time.gmtime(seconds)
    return b"%s, %02d %s %04d %02d:%02d:%02d GMT" % (_DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
                                                    t.tm_hour, t.tm_min, t.tm_sec)


def _at_boundary(conn: H1Conn) -> bool:
    """No request in progress on ``conn``, no close or hand-back under way, no body bytes owed:
    ``hand_back()`` sends it back now (after the last response's bytes, if some are unsent)."""
    return conn.exchange is None and not conn.frozen and not conn.discard


def _log(text: str) -> None:
    sys.stderr.write("fnserve worker: %s\n" % text)
    sys.stderr.flush()


def _print_traceback(exc: BaseException) -> None:
    sys.stderr.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    sys.stderr.flush()

