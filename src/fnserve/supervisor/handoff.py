"""The supervisor's side of the direct path (issue 14 item 2, docs/ARCHITECTURE.md "direct path"):
client connections passed to the instances that serve them, over one Unix ``SOCK_SEQPACKET``
channel per instance.

``DirectChannels`` listens on ``direct.sock`` (in the private folder of ``workers.sock``; the
``InstanceStarter`` opens it when the supervisor runs with ``direct=True`` and gives every worker
``options["direct"]``). A worker connects after its HELLO and sends one packet ``b"T" + token``;
the channel is attached to the instance with that token (``Instance.direct_channel``); a channel
with an unknown token is closed with a warning, as on ``workers.sock``.

Packets (one SEQPACKET message each, at most ``DIRECT_MAX_PACKET`` bytes; ``conn_id``: 8 bytes,
big-endian, unique in this process):

- front → worker ``b"C" + conn_id + data`` with the client socket's fd (``pass_to``): the worker
  serves that connection; ``data``: the bytes the front already read from it;
- worker → front ``b"X" + conn_id``: the worker closed it; ``b"H" + conn_id + data`` with the fd:
  handed back, ``data`` not served; the front's ``on_hand_back(sock, data)`` serves the rest;
- front → worker ``b"R" + conn_id`` (``reclaim``): requests wait for a slot of the function;
  hand that connection back (H) if it is idle, else ignore this packet.

One passed connection holds one ``Lease`` on its instance (``FunctionPool.grant``, the frames
path's slot accounting: scaling, idle time and recycling see it) until the worker reports it
closed or handed back, or the instance exits. Requests are counted from the worker's ``REPORT``
frames (``served``, ``failures``), not from the leases. ``EXPIRED`` (a direct request ran past
``maxDuration``; the worker answered 504) kills the instance, as ``Leasing`` does for the frames
path. An idle passed connection thus holds a slot: when requests of the frames path queue for
one (``Leasing.on_queue`` → ``reclaim``), the connections of that function whose slot says idle
(``SlotTable.state`` 0) are asked back with ``R``, oldest passed first, as many as requests wait
(again every ``RECLAIM_TICK`` s while some wait: a worker ignores ``R`` for a connection that
became busy); the ``H`` that follows releases the lease to the oldest waiter. ``DIRECT_PLAN``
(the routes and limits the worker's server needs, from the front's ``plan`` provider) goes to
each instance right after READY and on ``refresh``; an instance gets no connection before it has
one.

A worker is not trusted: malformed packets (unknown kind, truncated, wrong number of fds, a
connection it does not hold) have their fds closed and are ignored, with one warning per
instance (the rest at debug level).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from ..errors import DurationExceeded, HeartbeatTimeout, MemoryExceeded, WorkerCrashed, WorkerError
from ..runtime import protocol as p
from .function_pool import FunctionPool, Lease
from .instance import Instance
from .slottable import IDLE, SlotRequest, SlotTable

log = logging.getLogger("fnserve.supervisor")

__all__ = ["DIRECT_MAX_PACKET", "DirectChannels", "HandBack", "LostHook", "PlanProvider", "ReportHook", "close_hand_back", "close_lost"]

DIRECT_MAX_PACKET = 256 * 1024  # bytes: the largest packet on a channel (both directions)
CONN_ID = struct.Struct("!Q")
HEAD = 1 + CONN_ID.size  # kind byte + conn_id
IDENTIFY_TIMEOUT = 10.0  # s a new channel gets to send its token
BATCH = 64  # accepts / packets handled per wake-up (other channels get their turn)
_CONN_IDS = itertools.count(1)  # process-wide: conn ids never repeat, whatever the supervisor
_GONE = (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN)  # the channel itself is broken

PlanProvider = Callable[[str], "dict[str, Any] | None"]
HandBack = Callable[[socket.socket, bytes], None]
ReportHook = Callable[[str, int, "list[list[Any]]"], None]
# (the front's copy of the client socket, function id, why, the request's slot record, the instance's pid)
LostHook = Callable[[socket.socket, str, WorkerError, "SlotRequest | None", "int | None"], None]
SLOTS = 4096  # slots of an instance's table: connections it may hold at once (1 MiB of shared memory, touched as used)
OVERDUE_GRACE = 1.0  # s past maxDuration before the front kills an instance whose worker did not answer 504
SWEEP = 0.25  # s between the backstop's checks of the slot tables (only while connections are passed)
RECLAIM_TICK = 0.1  # s between asks for idle connections while requests wait (only then)
RECLAIM_AGAIN = 0.3  # s before an R the worker did not act on (its connection went busy) may be sent again


def close_hand_back(sock: socket.socket, data: bytes) -> None:
    """The default ``on_hand_back``: no front to serve the rest, the connection is closed."""
    sock.close()


def close_lost(sock: socket.socket, function_id: str, exc: WorkerError, request: SlotRequest | None = None,
               pid: int | None = None) -> None:
    """The default ``on_direct_lost``: no front to answer, the connection is closed."""
    _shut(sock)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()


def _close_fds(fds: list[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _valid_request(entry: Any) -> bool:
    """One REPORT entry: ``[request_id: str, method: str, path: str, status: int, duration_ms: number]``."""
    return (isinstance(entry, list) and len(entry) == 5 and isinstance(entry[0], str) and isinstance(entry[1], str)
            and isinstance(entry[2], str) and type(entry[3]) is int and type(entry[4]) in (int, float))


class DirectChannels:
    """The direct-path channels of one supervisor's instances (module docstring).

    ``path``: the listening socket (``""`` until ``open``). Set by the owner: ``recycle``
    (called with an instance after each connection end and each report: ``InstancePools.recycle_if_due``),
    ``on_hand_back(sock, data)`` (the front serves a handed-back connection; it owns ``sock``;
    default ``close_hand_back``), ``on_report(function_id, pid, requests)`` (the front's access
    log / metrics; ``requests``: ``[[request_id, method, path_with_query, status, duration_ms], ...]``,
    status 0 = no response; default None), ``plan`` (function id → plan dict or None).
    Counters: ``passed``, ``handed_back``, ``closed`` (X packets), ``lost`` (connections whose
    instance exited, or whose end the worker reported wrongly, before an X/H); ``reclaims``: R
    packets sent (``reclaim``).
    """

    def __init__(self) -> None:
        self.path = ""
        self.recycle: Callable[[Instance], None] | None = None
        self.on_hand_back: HandBack = close_hand_back
        self.on_report: ReportHook | None = None
        self.on_lost: LostHook = close_lost
        self.classify: Callable[[Instance], None] | None = None  # MemoryGuard.classify_exit: a cgroup OOM kill
        self.max_failures = 0  # the supervisor's max_failures (0: none): in each plan, with max_requests
        self.heartbeat_timeout: float | None = None  # s, named in the 502 of an instance the watchdog killed
        self.plan: PlanProvider | None = None
        self.passed = self.handed_back = self.closed = self.lost = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: socket.socket | None = None
        self._tokens: dict[str, Instance] = {}  # starting and live instances with direct on, by token
        self._unidentified: dict[socket.socket, asyncio.TimerHandle] = {}  # accepted, no token yet
        # conn_id → where it went, its lease, the front's duplicate of the client socket, its slot
        self._conns: dict[int, tuple[Instance, Lease, socket.socket, int]] = {}
        self._sweeper: asyncio.TimerHandle | None = None  # the maxDuration backstop, while connections are passed
        self._warned: set[int] = set()  # Instance.key of instances warned about a malformed packet
        self.reclaims = 0  # R packets sent
        # conn_id → (loop time (s) its last R was sent, Rs sent to it), until its X/H
        self._asked: dict[int, tuple[float, int]] = {}
        self._waiting: dict[str, FunctionPool] = {}  # pools with requests queued, asked again every RECLAIM_TICK s
        self._reclaimer: asyncio.TimerHandle | None = None

    # ----------------------------------------------------------------------------- listening
    def open(self, loop: asyncio.AbstractEventLoop, folder: str) -> str:
        """Listen on ``<folder>/direct.sock`` (``folder``: the private folder of ``workers.sock``,
        mode 0700, 0711 once an instance runs as another user: workers connect before dropping
        privileges). Returns its path. Raises ``WorkerError`` when it cannot listen."""
        path = os.path.join(folder, "direct.sock")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            listener.bind(path)
            listener.listen(socket.SOMAXCONN)
            listener.setblocking(False)
        except OSError as exc:
            listener.close()
            raise WorkerError(f"cannot listen on {path}: {exc}",
                              "check the temporary folder (TMPDIR), or pass --no-direct-path") from exc
        self._loop, self._listener, self.path = loop, listener, path
        loop.add_reader(listener.fileno(), self._accept)
        return path

    def close(self) -> None:
        """Stop listening and close every channel (the instances are stopped before: their
        connections' leases were released as they exited)."""
        loop = self._loop
        if loop is None:
            return
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        if self._reclaimer is not None:
            self._reclaimer.cancel()
            self._reclaimer = None
        self._waiting.clear()
        self._asked.clear()
        if self._listener is not None:
            loop.remove_reader(self._listener.fileno())
            self._listener.close()
            self._listener = None
        for chan in list(self._unidentified):
            self._refuse(chan, None)
        for inst in list(self._tokens.values()):
            self._close_channel(inst)
        self._loop, self.path = None, ""

    def _accept(self) -> None:
        assert self._listener is not None and self._loop is not None
        loop = self._loop
        for _ in range(BATCH):
            try:
                chan, _addr = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # EMFILE...: pause instead of spinning on a readable listener
                log.warning("cannot accept a direct-path channel: %s; retrying in 0.5 s", exc)
                listener = self._listener
                loop.remove_reader(listener.fileno())
                loop.call_later(0.5, self._resume, listener)
                return
            chan.setblocking(False)
            self._unidentified[chan] = loop.call_later(IDENTIFY_TIMEOUT, self._refuse, chan,
                                                       "a process connected to the direct-path socket and sent no token")
            loop.add_reader(chan.fileno(), self._identify, chan)

    def _resume(self, listener: socket.socket) -> None:
        if self._loop is not None and listener is self._listener:
            self._loop.add_reader(listener.fileno(), self._accept)

    def _refuse(self, chan: socket.socket, why: str | None) -> None:
        timer = self._unidentified.pop(chan, None)
        if timer is None:
            return
        timer.cancel()
        if why:
            log.warning("%s; closing it", why)
        if self._loop is not None and chan.fileno() >= 0:
            self._loop.remove_reader(chan.fileno())
        chan.close()

    def _identify(self, chan: socket.socket) -> None:
        """The first packet of a new channel: ``b"T" + token``."""
        try:
            msg, fds, flags, _addr = socket.recv_fds(chan, 256, 4)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            msg, fds, flags = b"", [], 0
        _close_fds(fds)
        inst = None
        if msg[:1] == b"T" and not fds and not flags & socket.MSG_TRUNC:
            inst = self._tokens.get(msg[1:].decode("ascii", "replace"))
        if inst is None or inst.direct_channel is not None or inst.exited.done():
            self._refuse(chan, "a process connected to the direct-path socket without a valid token")
            return
        self._unidentified.pop(chan).cancel()
        assert self._loop is not None
        self._loop.remove_reader(chan.fileno())
        try:  # the slot table (runtime.slotwriter): sent once, before any connection
            table = SlotTable(SLOTS)
        except OSError as exc:
            log.warning("%s: no shared memory for the direct path's slot table (%s); it gets no direct connection",
                        inst.target.id, exc)
            chan.close()
            return
        try:
            socket.send_fds(chan, [b"M" + SLOTS.to_bytes(4, "big")], [table.fd], socket.MSG_NOSIGNAL)
        except OSError as exc:
            log.info("%s: worker %s closed its direct-path channel (%s)", inst.target.id, inst.pid, exc)
            table.close()
            chan.close()
            return
        inst.direct_slots = table
        inst.direct_channel = chan
        self._loop.add_reader(chan.fileno(), self._read, inst, chan)

    def _close_channel(self, inst: Instance) -> None:
        chan, inst.direct_channel = inst.direct_channel, None
        if chan is None:
            return
        if self._loop is not None and chan.fileno() >= 0:
            self._loop.remove_reader(chan.fileno())
        chan.close()

    # ----------------------------------------------------------------------------- instances
    def expect(self, inst: Instance) -> None:
        """``inst`` is about to be launched with ``options["direct"]``: accept its channel, send
        it its plan when READY, handle its REPORT / EXPIRED frames, release its connections when
        it exits. ``discard(inst)`` if its launch fails."""
        self._tokens[inst.token] = inst
        inst.on_direct = self._control
        inst.exited.add_done_callback(functools.partial(self._exited, inst))

    def discard(self, inst: Instance) -> None:
        """Forget ``inst`` (its launch failed; also run when it exits)."""
        if self._tokens.get(inst.token) is inst:
            del self._tokens[inst.token]
        self._close_channel(inst)
        self._warned.discard(inst.key)

    def _exited(self, inst: Instance, _exited: object = None) -> None:
        """``inst`` exited: the H/X packets it sent before are taken first; then each connection
        it held is answered on the front's duplicate — a request whose response had not started
        gets the frames path's 502/504, a response under way is cut (the connection closed), an
        idle connection comes back to the front."""
        chan = inst.direct_channel
        while chan is not None and inst.direct_channel is chan and inst.direct_conns:
            before = len(inst.direct_conns)
            self._read(inst, chan)
            if len(inst.direct_conns) == before:
                break
        self.discard(inst)
        conns, inst.direct_conns = inst.direct_conns, set()
        table, inst.direct_slots = inst.direct_slots, None
        error: WorkerError | None = None
        for conn_id in sorted(conns):
            entry = self._conns.pop(conn_id, None)
            self._asked.pop(conn_id, None)
            if entry is None:
                continue
            _inst, lease, dup, slot = entry
            lease.release()
            state = table.state(slot) if table is not None else 0
            if state > 0:  # a request in progress, nothing of its response written
                self.lost += 1
                if error is None:
                    error = self._death(inst)
                self._call(self.on_lost, inst, dup, inst.target.id, error,
                           table.request(slot) if table is not None else None, inst.pid)
            elif state < 0:  # a response under way: cut, as the frames path aborts it
                self.lost += 1
                _shut(dup)
            else:  # idle: the front serves its next request
                self.handed_back += 1
                self._call(self.on_hand_back, inst, dup, b"")
        if table is not None:
            table.close()

    def _death(self, inst: Instance) -> WorkerError:
        """Why ``inst`` died, as ``Leasing`` tells it for the frames path."""
        if self.classify is not None:
            self.classify(inst)
        fid, reason = inst.target.id, inst.kill_reason
        status = inst.exited.result() if inst.exited.done() else None
        if reason == "duration":
            return DurationExceeded(fid, inst.direct_limits.max_duration or 0.0 if inst.direct_limits else 0.0)
        if reason == "memory":
            return MemoryExceeded(fid, inst.direct_limits.memory or 0 if inst.direct_limits else 0, inst.peak_rss_mb)
        if reason == "heartbeat":
            return HeartbeatTimeout(fid, self.heartbeat_timeout or 0.0, inst.silent_s)
        return WorkerCrashed(fid, exit_status=status)

    def _call(self, hook: Callable[..., None], inst: Instance, sock: socket.socket, *args: Any) -> None:
        try:
            hook(sock, *args)
        except Exception:
            log.exception("%s: the front could not take back a connection; closing it", inst.target.id)
            sock.close()

    # ----------------------------------------------------------------------------- passing
    def pass_to(self, pool: FunctionPool, sock: socket.socket, data: bytes) -> bool:
        """See ``Supervisor.pass_connection``: one of ``pool``'s instances takes ``sock``."""
        if pool.waiters or len(data) > DIRECT_MAX_PACKET - HEAD:
            return False
        inst = self._pick(pool)
        if inst is None:
            return False
        chan, table = inst.direct_channel, inst.direct_slots
        assert chan is not None and table is not None
        slot = table.assign()
        if slot is None:
            return False
        try:  # kept to answer 502/504 if the instance dies (docs/ARCHITECTURE.md "direct path", design (e))
            dup = socket.socket(fileno=os.dup(sock.fileno()))
        except OSError:
            table.free(slot)
            return False
        lease = pool.grant(inst, count=False)  # requests are counted from REPORT frames
        conn_id = next(_CONN_IDS) << 32 | slot  # the worker writes the state of slot conn_id & 0xFFFFFFFF
        try:
            socket.send_fds(chan, [b"C" + CONN_ID.pack(conn_id), data], [sock.fileno()], socket.MSG_NOSIGNAL)
        except OSError as exc:  # EAGAIN / ENOBUFS: its queue is full; EPIPE: it went away; EBADF...
            lease.release()
            table.free(slot)
            dup.close()
            if exc.errno in _GONE:
                log.info("%s: worker %s closed its direct-path channel (%s)", inst.target.id, inst.pid, exc)
                self._close_channel(inst)
            return False
        self._conns[conn_id] = (inst, lease, dup, slot)
        inst.direct_conns.add(conn_id)
        inst.direct_limits = pool.limits
        self.passed += 1
        if pool.limits.max_duration and self._sweeper is None and self._loop is not None:
            self._sweeper = self._loop.call_later(SWEEP, self._sweep)
        return True

    def _sweep(self) -> None:
        """The maxDuration backstop: the worker answers 504 itself (``EXPIRED``); an instance
        whose loop is stuck cannot, so one with a request older than maxDuration + 1 s is
        killed here ("duration"), and its exit answers that request 504."""
        self._sweeper = None
        seen: set[int] = set()
        for inst, _lease, _dup, _slot in list(self._conns.values()):
            if inst.key in seen:
                continue
            seen.add(inst.key)
            limit = inst.direct_limits.max_duration if inst.direct_limits is not None else None
            table = inst.direct_slots
            if limit and table is not None and not inst.exited.done() and table.overdue(limit + OVERDUE_GRACE):
                log.warning("%s: a request ran past its maxDuration of %g s; killing worker %s (504)",
                            inst.target.id, limit, inst.pid)
                inst.kill("duration")
        if self._conns and self._loop is not None:
            self._sweeper = self._loop.call_later(SWEEP, self._sweep)

    # ----------------------------------------------------------------------------- reclaiming
    def reclaim(self, pool: FunctionPool) -> None:
        """``Leasing.on_queue``: a request started waiting for a slot of ``pool``. Ask its
        instances for idle passed connections back (module docstring: packet ``R``; ``reclaims``
        counts them), as many as requests wait (``pool.queued``), and again every
        ``RECLAIM_TICK`` s while some wait. Never raises."""
        if not self._conns or self._loop is None:
            return
        self._reclaim(pool)
        if pool.queued:
            self._waiting[pool.target.id] = pool
            if self._reclaimer is None:
                self._reclaimer = self._loop.call_later(RECLAIM_TICK, self._reclaim_again)

    def _reclaim_again(self) -> None:
        self._reclaimer = None
        for fid, pool in list(self._waiting.items()):
            if not pool.queued or not self._conns:
                del self._waiting[fid]
            else:
                self._reclaim(pool)
        if self._waiting and self._loop is not None:
            self._reclaimer = self._loop.call_later(RECLAIM_TICK, self._reclaim_again)

    def _reclaim(self, pool: FunctionPool) -> int:
        """Send ``R`` for passed idle connections of ``pool``, one per queued request: those asked
        less than ``RECLAIM_AGAIN`` s ago count as on their way (their ``H``); of the others, the
        least asked first (one that ignored an ``R`` — busy again by then, or a worker that does
        not answer — goes behind those never asked), then the oldest."""
        want = pool.queued
        if not want or self._loop is None:
            return 0
        idle: list[tuple[int, Instance]] = []
        for inst in pool.instances:
            table = inst.direct_slots
            if table is None or inst.direct_channel is None or inst.exited.done():
                continue
            idle.extend((conn_id, inst) for conn_id in inst.direct_conns if table.state(conn_id & 0xFFFFFFFF) == IDLE)
        if not idle:
            return 0
        now, sent = self._loop.time(), 0
        candidates: list[tuple[int, int, Instance]] = []
        for conn_id, inst in idle:
            asked = self._asked.get(conn_id)
            if asked is None:
                candidates.append((0, conn_id, inst))
            elif now - asked[0] < RECLAIM_AGAIN:
                want -= 1  # asked a moment ago: its H is on its way
            else:
                candidates.append((asked[1], conn_id, inst))
        candidates.sort(key=lambda c: (c[0], c[1]))  # least asked, then oldest (conn ids grow with each pass)
        for tries, conn_id, inst in candidates[:max(0, want)]:
            chan = inst.direct_channel
            if chan is None:
                continue
            try:
                chan.send(b"R" + CONN_ID.pack(conn_id), socket.MSG_NOSIGNAL)
            except OSError as exc:  # EAGAIN / ENOBUFS: asked again at the next tick; EPIPE: it went away
                if exc.errno in _GONE:
                    log.info("%s: worker %s closed its direct-path channel (%s)", inst.target.id, inst.pid, exc)
                    self._close_channel(inst)
                continue
            self._asked[conn_id] = (now, tries + 1)
            sent += 1
        self.reclaims += sent
        return sent

    @staticmethod
    def _pick(pool: FunctionPool) -> Instance | None:
        """The least busy ready instance of ``pool`` with a channel, a plan and a free slot."""
        concurrency = pool.limits.concurrency
        best = None
        for inst in pool.instances:
            if (inst.direct_channel is not None and inst.direct_planned and inst.usable
                    and inst.load < concurrency and (best is None or inst.load < best.load)):
                best = inst
        return best

    # ----------------------------------------------------------------------------- receiving
    def _read(self, inst: Instance, chan: socket.socket) -> None:
        for _ in range(BATCH):
            try:
                msg, fds, flags, _addr = socket.recv_fds(chan, DIRECT_MAX_PACKET, 4)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                msg, fds, flags = b"", [], 0
            if not msg and not fds:  # EOF: the worker closed its end (it is exiting)
                if inst.direct_channel is chan:
                    self._close_channel(inst)
                return
            self._packet(inst, msg, fds, flags)
            if inst.direct_channel is not chan:
                return

    def _packet(self, inst: Instance, msg: bytes, fds: list[int], flags: int) -> None:
        kind = msg[:1]
        if kind == b"H" and flags & socket.MSG_CTRUNC:  # its descriptor did not fit here (EMFILE): use our copy
            _close_fds(fds)
            fds, flags = [], flags & ~socket.MSG_CTRUNC
        if kind not in (b"X", b"H") or len(msg) < HEAD or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            self._malformed(inst, fds, f"a malformed packet ({kind!r}, {len(msg)} bytes, {len(fds)} fds)")
            return
        (conn_id,) = CONN_ID.unpack_from(msg, 1)
        entry = self._conns.get(conn_id)
        if entry is None or entry[0] is not inst:
            self._malformed(inst, fds, f"a {kind.decode()} packet for connection {conn_id}, which it does not hold")
            return
        del self._conns[conn_id]
        self._asked.pop(conn_id, None)
        inst.direct_conns.discard(conn_id)
        _inst, lease, dup, slot = entry
        lease.release()
        if inst.direct_slots is not None:
            inst.direct_slots.free(slot)
        if kind == b"H" and not fds:  # the worker could not take it (no descriptor left): the front's copy serves
            self.handed_back += 1
            self._call(self.on_hand_back, inst, dup, msg[HEAD:])
            if self.recycle is not None:
                self.recycle(inst)
            return
        dup.close()  # the worker ended it (X: it shut the socket down) or sent it back (H: a new descriptor)
        if len(fds) != (1 if kind == b"H" else 0):
            self.lost += 1
            self._malformed(inst, fds, f"a {kind.decode()} packet with {len(fds)} fds for connection {conn_id} "
                                       "(its slot was released)")
        elif kind == b"X":
            self.closed += 1
        else:
            self.handed_back += 1
            self._hand_back(inst, fds[0], msg[HEAD:])
        if self.recycle is not None:
            self.recycle(inst)

    def _hand_back(self, inst: Instance, fd: int, data: bytes) -> None:
        try:
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            _close_fds([fd])
            self._malformed(inst, [], f"a hand-back whose fd is not a socket ({exc})")
            return
        try:
            self.on_hand_back(sock, data)
        except Exception:
            log.exception("%s: the front could not take back a connection; closing it", inst.target.id)
            sock.close()

    def _malformed(self, inst: Instance, fds: list[int], what: str) -> None:
        _close_fds(fds)
        if inst.key in self._warned:
            log.debug("%s: worker %s sent %s on its direct-path channel; ignored", inst.target.id, inst.pid, what)
            return
        self._warned.add(inst.key)
        log.warning("%s: worker %s sent %s on its direct-path channel; ignored (more from this worker are "
                    "logged at debug level)", inst.target.id, inst.pid, what)

    # ----------------------------------------------------------------------------- control frames
    def _control(self, inst: Instance, ftype: int, obj: Any) -> None:
        """``Instance.on_direct``: READY, REPORT and EXPIRED frames of a direct-path instance."""
        if ftype == p.READY:
            self.send_plan(inst)
        elif ftype == p.REPORT:
            self._report(inst, obj)
        elif ftype == p.EXPIRED:
            limit = obj.get("limit") if isinstance(obj, dict) else None
            if not inst.exited.done():
                log.warning("%s: a request ran past its maxDuration of %g s; killing worker %s (504)",
                            inst.target.id, limit if type(limit) in (int, float) else 0.0, inst.pid)
                inst.kill("duration")

    def _report(self, inst: Instance, obj: Any) -> None:
        """Requests served directly: ``served`` +1 each, ``failures`` as ``Leasing.serve`` counts
        them (consecutive statuses >= 500; any other status, 0 included, resets it)."""
        requests = obj.get("requests") if isinstance(obj, dict) else None
        if not isinstance(requests, list):
            self._malformed(inst, [], "a REPORT frame without a list of requests")
            return
        valid = [entry for entry in requests if _valid_request(entry)]
        if len(valid) != len(requests):
            self._malformed(inst, [], f"a REPORT frame with {len(requests) - len(valid)} malformed entries")
        for entry in valid:
            inst.failures = inst.failures + 1 if entry[3] >= 500 else 0
        inst.served += len(valid)
        hook = self.on_report
        if hook is not None and valid and inst.pid is not None:
            try:
                hook(inst.target.id, inst.pid, valid)
            except Exception:
                log.exception("%s: the front's direct-path report hook failed", inst.target.id)
        if self.recycle is not None:
            self.recycle(inst)

    # ----------------------------------------------------------------------------- plans
    def send_plan(self, inst: Instance) -> bool:
        """Send ``plan(inst.target.id)`` to ``inst`` (``DIRECT_PLAN``); True if sent. No plan (no
        provider, it returned None or raised, or it is not JSON-able): the instance gets no
        direct connection until a later ``send_plan`` sends one (a plan sent earlier stays with
        the worker: it keeps serving the connections it holds with it)."""
        plan = None
        if self.plan is not None:
            try:
                plan = self.plan(inst.target.id)
            except Exception:
                log.exception("%s: its direct-path plan could not be built; its instances get no direct connection",
                              inst.target.id)
        conn = inst.conn
        if plan is None and inst.direct_planned and conn is not None and not conn.closed:
            # it had one: an empty plan makes it hand every connection it holds back at its next request
            conn.send_control(p.DIRECT_PLAN, {"version": 1, "function": inst.target.id, "routes": []})
        if plan is not None:  # what is left of this instance's own limits (pools.recycle_if_due)
            plan = {**plan, "max_requests": inst.recycle_at,  # in all: the worker counts both paths
                    "max_failures": self.max_failures or None}  # in a row, over both paths: the worker counts
        if plan is None or conn is None or conn.closed:
            inst.direct_planned = False
            return False
        try:
            conn.send_control(p.DIRECT_PLAN, plan)
        except (TypeError, ValueError) as exc:
            log.error("%s: its direct-path plan is not JSON (%s); its instances get no direct connection",
                      inst.target.id, exc)
            inst.direct_planned = False
            return False
        inst.direct_planned = True
        return True

    def refresh(self) -> int:
        """Send the plan again to every ready instance (the front's site changed). Returns how
        many instances got one."""
        return sum(self.send_plan(inst) for inst in list(self._tokens.values()) if inst.state == "ready")

    def stats(self) -> dict[str, int]:
        """``{"passed", "handed_back", "closed", "lost", "open"}``: connections, since the start
        (``open``: held by instances now)."""
        return {"passed": self.passed, "handed_back": self.handed_back, "closed": self.closed, "lost": self.lost,
                "open": len(self._conns)}
