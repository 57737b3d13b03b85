"""The front owns every instance process (issue 10 items 6 and 7): a child subreaper that waits
for its instances, kills each one's process group as it exits, and reaps the orphans they leave.

Decisions:

- **subreaper**: while a supervisor runs, the front process is a child subreaper
  (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux ≥ 3.4). A process orphaned anywhere below it is
  reparented to the front instead of init: an instance whose zygote died (a function ran
  ``os.kill(os.getppid(), 9)``) keeps running, serving and being watched; a process a function
  double-forked is still reaped. Turned off again when the last supervisor of the process closes;
- **one process group per instance**: every instance leads its own process group (a forked one
  calls ``setsid`` right after the fork, a spawned one is started with ``start_new_session``), so
  its **pgid is its pid** (``Instance.pid``). Whoever reaps an instance first SIGKILLs its group
  (the zygote for its children, the front for spawned workers and for instances whose zygote
  died): while the instance is an unreaped zombie its pid cannot be reused, so the signal can only
  reach what the function started. Every exit path (retired, killed for ``maxDuration``, memory
  or heartbeat, crashed, shutdown, zygote death) ends there. A process that leaves the group
  (``setsid``/``setpgid``) escapes this (only a cgroup would hold it); it is still reaped;
- **waiting without stealing**: asyncio's child watchers and ``subprocess`` wait for the pids they
  started, one by one; so must we. ``ProcessWatch`` waits for one process through a pidfd (the
  loop watches it; polling every 50 ms without ``os.pidfd_open``) and reaps it only when told it
  is ours (``reap=True``: our child, or an orphan handed to us); the sweep reaps zombies of the
  process groups registered as ``family`` (instances, standbys, spawned workers) with
  ``waitid(P_PGID)`` — never a pid a watch or someone else (``ignore``: zygote processes, which
  asyncio waits for) waits for. A zombie child outside every known family (a function's daemon
  that called ``setsid``) is reaped once it has been a zombie for ``STALE_AFTER`` s, or
  ``OWN_STALE_AFTER`` s in the front's own session (an orphan of a command the front ran; a
  zombie the front's own code leaves unwaited that long has no waiter: ``subprocess`` and
  asyncio wait at once).

One ``ChildReaper`` per process (``REAPER``): being a subreaper and having children are
properties of the process, not of one supervisor. ``open()`` / ``close()`` count supervisors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable

from ..runtime.containment import libc_prctl

log = logging.getLogger("fnserve.supervisor.reaper")

PR_SET_CHILD_SUBREAPER = 36
POLL_EVERY = 0.05  # s between exit checks of a watched process without a pidfd
RETRY_EVERY = 0.02  # s between attempts to reap a process still being reparented to us
RETRIES = 100  # ... at most (2 s), then its status is reported unknown
SWEEP_EVERY = 2.0  # s between sweeps of the families' zombies
STALE_AFTER = 10.0  # s a zombie child outside every family waits before it is reaped anyway
OWN_STALE_AFTER = 60.0  # ... when it is in the front's own session
SOON = (0.02, 0.2, 1.0)  # s after an exit: extra sweeps (the group's members die one by one)
UNKNOWN_STATUS = 255  # exit status of a process someone else reaped (asyncio's choice too)


def set_child_subreaper(on: bool) -> bool:
    """``prctl(PR_SET_CHILD_SUBREAPER, on)`` for this process; False where it is unavailable."""
    prctl = libc_prctl()
    return prctl is not None and int(prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0)) == 0


def proc_state(pid: int) -> tuple[str, int, int, int] | None:
    """``(state, ppid, pgrp, session)`` of ``pid`` from ``/proc/<pid>/stat``, None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[1]), int(fields[2]), int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def child_pids() -> list[int]:
    """The pids of this process's children: ``/proc/self/task/*/children`` where the kernel has
    them (``CONFIG_PROC_CHILDREN``), else a scan of ``/proc`` (milliseconds per thousand processes)."""
    out: list[int] = []
    try:
        tasks = os.listdir("/proc/self/task")
        for tid in tasks:
            with open(f"/proc/self/task/{tid}/children", "rb") as f:
                out.extend(int(pid) for pid in f.read().split())
        return out
    except FileNotFoundError:
        out = []
    except (OSError, ValueError):
        return out
    me = os.getpid()
    try:
        names = os.listdir("/proc")
    except OSError:
        return out
    for name in names:
        if name.isdigit():
            state = proc_state(int(name))
            if state is not None and state[1] == me:
                out.append(int(name))
    return out


class ProcessWatch:
    """Waits for the exit of process ``pid`` and calls ``on_exit(status)`` once (status: exit code,
    negative = killed by that signal, ``UNKNOWN_STATUS`` when someone else reaped it). ``reap``:
    the process is (or is about to become) our child: on its exit, SIGKILL its process group, then
    reap it. Without ``reap`` its parent reaps it and reports the status through ``finish``;
    ``take_over()`` when that parent died (the process is reparented to us, the subreaper)."""

    def __init__(self, reaper: ChildReaper, pid: int, on_exit: Callable[[int], None], reap: bool) -> None:
        self.reaper = reaper
        self.pid = pid
        self.on_exit = on_exit
        self.reap = reap
        self.done = False
        self._loop = asyncio.get_running_loop()
        self._fd = -1
        self._armed = False
        self._timer: asyncio.TimerHandle | None = None
        self._retries = 0
        with contextlib.suppress(AttributeError, OSError):  # pins this very process, whatever reuses its pid
            self._fd = os.pidfd_open(pid)
        if reap:
            self._arm()

    def take_over(self) -> None:
        """Its parent (a zygote) died without reporting its exit: reap it ourselves."""
        if not self.done and not self.reap:
            self.reap = True
            self._arm()

    def finish(self, status: int) -> None:
        """It exited with ``status``: stop watching, tell ``on_exit`` (idempotent)."""
        if self.done:
            return
        self.done = True
        self._disarm()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self.reaper._forget(self)
        try:
            self.on_exit(status)
        finally:
            self.reaper.sweep_soon()

    def _arm(self) -> None:
        if self.done or self._armed:
            return
        self._armed = True
        if self._fd >= 0:
            self._loop.add_reader(self._fd, self._check)
        else:
            self._timer = self._loop.call_later(POLL_EVERY, self._poll)
        self._check()

    def _disarm(self) -> None:
        if self._armed and self._fd >= 0:
            self._loop.remove_reader(self._fd)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._armed = False

    def _poll(self) -> None:
        self._timer = None
        self._check()
        if self._armed and not self.done and self._fd < 0:
            self._timer = self._loop.call_later(POLL_EVERY, self._poll)

    def _retry(self) -> None:
        self._disarm()
        self._retries += 1
        if self._retries > RETRIES:
            self.finish(UNKNOWN_STATUS)
        else:
            self._timer = self._loop.call_later(RETRY_EVERY, self._arm)

    def _check(self) -> None:
        if self.done:
            return
        flags = os.WEXITED | os.WNOHANG | os.WNOWAIT
        try:
            if self._fd >= 0 and hasattr(os, "P_PIDFD"):
                info = os.waitid(os.P_PIDFD, self._fd, flags)
            else:
                info = os.waitid(os.P_PID, self.pid, flags)
        except ChildProcessError:  # not our child (yet): a zombie being reparented, or gone
            state = proc_state(self.pid) if self._exists() else None
            if state is None:
                self.finish(UNKNOWN_STATUS)  # reaped by someone else
            elif state[0] == "Z" or state[1] == os.getpid():
                self._retry()  # its dead parent's exit is still being processed
            elif self._fd < 0:
                pass  # alive under another parent (we are no subreaper): the poll goes on
            return
        if info is None:
            return  # still running
        # exited and ours, still a zombie: its pid, so its process group id, cannot be reused yet
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, signal.SIGKILL)
        try:
            _, status = os.waitpid(self.pid, 0)
        except ChildProcessError:
            self.finish(UNKNOWN_STATUS)
            return
        self.finish(os.waitstatus_to_exitcode(status))

    def _exists(self) -> bool:
        if self._fd >= 0:
            try:
                signal.pidfd_send_signal(self._fd, 0)
            except ProcessLookupError:
                return False
            except (OSError, AttributeError):
                pass
            return True
        return proc_state(self.pid) is not None


class ChildReaper:
    """This process as the parent of every instance (module docstring); use ``REAPER``.

    ``open()`` / ``await close()``: one per supervisor (subreaper on while any is open; the last
    one kills and reaps what is left of the families). ``watch(pid, on_exit, reap=)`` →
    ``ProcessWatch``; ``family(pgid)``: zombies of that process group (and session) are ours to
    reap; ``ignore(pid)`` / ``unignore(pid)``: a child someone else waits for (a zygote, through
    asyncio). ``sweep()`` reaps what it may now; ``subreaper``: True while it is one."""

    def __init__(self) -> None:
        self.subreaper = False
        self._users = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._soon: list[asyncio.TimerHandle] = []
        self._watches: dict[int, ProcessWatch] = {}
        self._ignored: set[int] = set()
        self._families: set[int] = set()
        self._strays: dict[int, float] = {}  # zombie child outside the families → first seen (monotonic)
        self._last_scan = 0.0
        self.stale_after = STALE_AFTER  # s (tests shorten it); OWN_STALE_AFTER scales with it

    # ----------------------------------------------------------------------------- lifecycle
    def open(self) -> None:
        """A supervisor starts (in the running loop): become a subreaper, sweep periodically."""
        loop = asyncio.get_running_loop()
        self._users += 1
        if self._users == 1 or self._loop is not loop or loop.is_closed():
            if self._users == 1:
                self.subreaper = set_child_subreaper(True)
                if not self.subreaper:
                    log.warning("cannot become a child subreaper (prctl PR_SET_CHILD_SUBREAPER); instances "
                                "start as fresh interpreters, and orphans of functions go to init")
            self._loop = loop
            self._schedule()

    async def close(self) -> None:
        """A supervisor stopped. The last one: kill (SIGKILL) and reap what is left of the
        families (at most ~1 s), stop being a subreaper."""
        self._users = max(0, self._users - 1)
        if self._users:
            return
        for _ in range(50):
            if not self._family_members():
                break
            self.sweep()
            await asyncio.sleep(0.02)
        for pgid in self._family_members():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        for _ in range(50):
            self.sweep()
            if not self._family_members():
                break
            await asyncio.sleep(0.02)
        self._cancel()
        if self.subreaper:
            set_child_subreaper(False)
            self.subreaper = False

    def _cancel(self) -> None:
        for handle in [self._timer, *self._soon]:
            if handle is not None:
                handle.cancel()
        self._timer, self._soon = None, []

    def _schedule(self) -> None:
        self._cancel()
        if self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(SWEEP_EVERY, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self.sweep(scan=time.monotonic() - self._last_scan >= self.stale_after / 2)
        if self._users and self._loop is not None and not self._loop.is_closed():
            self._timer = self._loop.call_later(SWEEP_EVERY, self._tick)

    # ----------------------------------------------------------------------------- registry
    def watch(self, pid: int, on_exit: Callable[[int], None], *, reap: bool = True) -> ProcessWatch:
        """Watch ``pid`` (see ``ProcessWatch``); its group becomes a ``family``."""
        self._families.add(pid)
        watch = ProcessWatch(self, pid, on_exit, reap)
        if not watch.done:
            self._watches[pid] = watch
        return watch

    def _forget(self, watch: ProcessWatch) -> None:
        if self._watches.get(watch.pid) is watch:
            del self._watches[watch.pid]

    def family(self, pgid: int) -> None:
        """Zombies in process group (or session) ``pgid`` are fnserve's: reap them."""
        self._families.add(pgid)

    def ignore(self, pid: int) -> None:
        """Never reap ``pid``: someone else waits for it."""
        self._ignored.add(pid)

    def unignore(self, pid: int) -> None:
        self._ignored.discard(pid)

    # ----------------------------------------------------------------------------- sweeping
    def sweep_soon(self) -> None:
        """Sweep a few times in the next second (after an exit, its group's members die)."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._users:
            return
        self._soon = [h for h in self._soon if not h.cancelled() and h.when() > loop.time()]
        if len(self._soon) < 2 * len(SOON):
            self._soon.extend(loop.call_later(delay, self.sweep) for delay in SOON)

    def sweep(self, scan: bool = False) -> int:
        """Reap the zombies of the families (``waitid(P_PGID)``), and with ``scan`` the stray
        zombie children (``/proc``; zombies for ``stale_after`` s, see the module docstring).
        Returns how many were reaped."""
        reaped = 0
        for pgid in list(self._families):
            reaped += self._reap_group(pgid)
        if scan:
            self._last_scan = time.monotonic()
            reaped += self._reap_strays()
        return reaped

    def _reap_group(self, pgid: int) -> int:
        reaped = 0
        while True:
            try:
                info = os.waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:  # no child of ours in that group
                if pgid not in self._watches and not _group_exists(pgid):
                    self._families.discard(pgid)
                return reaped
            if info is None or info.si_pid in self._watches or info.si_pid in self._ignored:
                return reaped  # running, or its own waiter reaps it (the next sweep sees the rest)
            if not _reap(info.si_pid):
                return reaped
            reaped += 1

    def _reap_strays(self) -> int:
        now, sid, reaped = time.monotonic(), os.getsid(0), 0
        strays: dict[int, float] = {}
        for pid in child_pids():
            if pid in self._watches or pid in self._ignored:
                continue
            state = proc_state(pid)
            if state is None or state[0] != "Z":
                continue
            stale = self.stale_after * (OWN_STALE_AFTER / STALE_AFTER if state[3] == sid else 1.0)
            if state[2] in self._families or state[3] in self._families or now - self._strays.get(pid, now) >= stale:
                reaped += _reap(pid)
            else:
                strays[pid] = self._strays.get(pid, now)
        self._strays = strays
        return reaped

    def _family_members(self) -> list[int]:
        """Process groups of the families that still have a process."""
        return [pgid for pgid in self._families if pgid not in self._watches and _group_exists(pgid)]


def _group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int) -> bool:
    try:
        return os.waitpid(pid, os.WNOHANG)[0] == pid
    except ChildProcessError:
        return False


REAPER = ChildReaper()
"""The one reaper of this process (module docstring)."""

