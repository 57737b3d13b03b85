"""Containment an instance applies to itself before the function's code runs (issue 10 items 6
and 7); stdlib only (``ctypes`` for ``prctl``), Python 3.9–3.13.

Called by ``worker.main`` (spawned and forked instances alike) with the worker options:

- ``"rlimits": {"nofile": n, "nproc": n}`` → ``RLIMIT_NOFILE`` / ``RLIMIT_NPROC``, soft and hard
  (a function cannot raise them again), never above the hard limit it inherited. ``RLIMIT_NPROC``
  counts every process and thread of the instance's user (the front's, the zygotes', every
  instance's), not the instance's own;
- ``"supervisor": pid`` (the front): the instance dies with the front. A spawned worker is the
  front's child: ``PR_SET_PDEATHSIG`` = SIGKILL at once. A forked instance is its zygote's child
  and must NOT die with the zygote; the zygote SIGKILLs it if the front dies, and if the zygote
  died first the instance was reparented to the front (a child subreaper): ``FrontDeath.check``
  (run by every heartbeat) sets the death signal then. Independently, the instance stops when
  its connection to the front closes.
"""

import os
import signal
import sys
from typing import Any, Dict, Optional

PR_SET_PDEATHSIG = 1
RLIMITS = {"nofile": "RLIMIT_NOFILE", "nproc": "RLIMIT_NPROC"}


def log_line(message: str) -> None:
    """Write ``[fnserve worker <pid>] message`` to stderr (the instance's log), flushed."""
    sys.stderr.write("[fnserve worker %d] %s\n" % (os.getpid(), message))
    sys.stderr.flush()


def libc_prctl() -> Any:
    """libc's ``prctl`` (``ctypes``, errno kept), or None where there is none."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None


def apply_rlimits(rlimits: Optional[Dict[str, Any]]) -> Dict[str, int]:
    """Set each of ``rlimits`` (``{"nofile": n, "nproc": n}``; 0 or absent: left alone) as soft
    and hard limit, capped at the current hard limit. Returns what was set; a failure is logged."""
    done: Dict[str, int] = {}
    if not rlimits:
        return done
    try:
        import resource
    except ImportError:  # pragma: no cover - not Unix
        return done
    for key, name in RLIMITS.items():
        value = int(rlimits.get(key) or 0)
        which = getattr(resource, name, None)
        if value <= 0 or which is None:
            continue
        try:
            _soft, hard = resource.getrlimit(which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            resource.setrlimit(which, (value, value))
            done[key] = value
        except (ValueError, OSError) as exc:
            log_line("cannot set %s to %s: %s" % (name, value, exc))
    return done


class FrontDeath:
    """Die with the front (process ``supervisor``) through ``PR_SET_PDEATHSIG`` once the front is
    this process's parent (module docstring). ``check()`` after a possible reparenting; returns
    False when the front is gone (the parent is neither the one we had nor the front)."""

    def __init__(self, supervisor: int) -> None:
        self.supervisor = supervisor
        self.parent = os.getppid()
        self.armed = False
        self.prctl = libc_prctl()

    def check(self) -> bool:
        if self.armed or self.prctl is None:
            return True
        parent = os.getppid()
        if parent == self.supervisor:
            self.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            self.armed = os.getppid() == self.supervisor  # else it died in between: no signal comes
            return self.armed
        return parent == self.parent


def contain(options: Dict[str, Any]) -> Optional[FrontDeath]:
    """Apply ``options["rlimits"]`` and the death signal (module docstring). Returns the
    ``FrontDeath`` to ``check()`` on every heartbeat, or None without ``options["supervisor"]``."""
    apply_rlimits(options.get("rlimits"))
    supervisor = int(options.get("supervisor") or 0)
    if not supervisor:
        return None
    front = FrontDeath(supervisor)
    if not front.check():
        log_line("the supervisor (pid %d) is gone; exiting" % supervisor)
        os._exit(0)
    return front
