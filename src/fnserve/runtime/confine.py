"""Confinement of one function instance in ``fnserve start`` (issue 10 items 8 and 9).

Runs inside the instance (stdlib only, Python 3.9–3.13, ``ctypes`` for the system calls), once,
from ``worker.main``: after the instance connected to the supervisor and its memory-cgroup join
was started, before the function's module is imported. ``fnserve dev`` passes no confinement and
nothing here runs.

``confine(options, joining)`` with ``options`` (JSON, built by ``fnserve.supervisor.target``)::

    {"tmpdir": "/tmp/fnserve-<pid>-<x>/tmp-<y>",   # this instance's TMPDIR (made and removed by the supervisor)
     "read_only": true,                            # writes only beneath "writable" (+ tmpdir)
     "writable": ["/tmp", "/dev", ...],
     "project": "/srv/app",                        # the live project folder (mount fallback, hints)
     "user": {"uid": 65534, "gid": 65534, "groups": [65534], "name": "nobody", "home": "/nonexistent"} | null,
     "mount_fallback": true}                       # no Landlock: read-only bind mount when root

Steps, in this order:

1. ``TMPDIR`` (and ``tempfile.tempdir``) point at ``tmpdir``.
2. Without Landlock, as root, with ``mount_fallback``: a private mount namespace in which the
   project folder is bind-mounted read-only (``unshare(CLONE_NEWNS)``, ``mount(2)``). It holds
   against a function only when it runs as another user (``user``): root may remount.
3. ``user``: wait for the cgroup join (a root-only write), then ``setgroups``/``setgid``/
   ``setuid`` to that user (``HOME``, ``USER``, ``LOGNAME`` follow).
4. ``read_only``: a Landlock domain (Linux ≥ 5.13, unprivileged, ``PR_SET_NO_NEW_PRIVS``) that
   handles every write right (write, truncate, create, remove, rename/link across folders) and
   grants them only beneath ``writable`` and ``tmpdir``; reading and executing stay allowed
   everywhere. Since ABI 6 the domain also scopes signals: the instance cannot signal processes
   outside it (the front, its zygote, other instances; its own children are inside). Landlock
   also refuses ptrace and ``/proc/<pid>/mem|environ`` of processes outside the domain.
   Bytecode is not written (``sys.dont_write_bytecode``): ``.fnserve/pycache`` is read-only too.
5. ``PR_SET_DUMPABLE`` 0: other processes of the same user (other instances) can no longer read
   this one's ``/proc/<pid>/mem|environ|smaps`` or ptrace it (root can). Landlock alone refuses
   ``mem`` and ptrace across domains, but not ``environ`` (``PTRACE_MODE_READ``; seen on 6.18).

A write the domain refuses raises ``PermissionError: [Errno 13] Permission denied: '<path>'``
(``EROFS`` under the mount fallback); :func:`hint` gives the sentence the worker logs with it.
"""

import errno
import os
import sys
from typing import Any, Dict, List, Optional

from .containment import log_line

__all__ = ["confine", "hint", "landlock_abi", "set_dumpable", "HINT"]

SYS_LANDLOCK_CREATE_RULESET = 444  # the same number on every architecture (syscalls added after 5.x)
SYS_LANDLOCK_ADD_RULE = 445
SYS_LANDLOCK_RESTRICT_SELF = 446
LANDLOCK_CREATE_RULESET_VERSION = 1
LANDLOCK_RULE_PATH_BENEATH = 1
PR_SET_DUMPABLE = 4
PR_SET_NO_NEW_PRIVS = 38
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 32, 4096, 16384, 1 << 18

# Landlock filesystem access rights (linux/landlock.h)
FS_WRITE_FILE = 1 << 1
FS_REMOVE_DIR = 1 << 4
FS_REMOVE_FILE = 1 << 5
FS_MAKE_CHAR = 1 << 6
FS_MAKE_DIR = 1 << 7
FS_MAKE_REG = 1 << 8
FS_MAKE_SOCK = 1 << 9
FS_MAKE_FIFO = 1 << 10
FS_MAKE_BLOCK = 1 << 11
FS_MAKE_SYM = 1 << 12
FS_REFER = 1 << 13  # ABI 2
FS_TRUNCATE = 1 << 14  # ABI 3
SCOPE_SIGNAL = 1 << 1  # ABI 6
FILE_RIGHTS = FS_WRITE_FILE | FS_TRUNCATE  # the write rights a rule on a file (not a folder) may carry

EXIT_NO_USER = 70  # the instance could not become --user (the zygote child's EXIT_CHILD_ERROR too)
HINT = ("the project tree is read-only to functions in fnserve start (as on Vercel); "
        "write to /tmp or $TMPDIR")


def _libc() -> Any:
    import ctypes  # imported only where something is confined (~5 ms): never in dev's workers

    return ctypes.CDLL(None, use_errno=True)


def landlock_abi() -> int:
    """The Landlock ABI version of the running kernel (1 = Linux 5.13, ...), 0 when Landlock is
    missing or disabled (or not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0
    try:
        import ctypes

        libc = _libc()
        version = int(libc.syscall(SYS_LANDLOCK_CREATE_RULESET, None, ctypes.c_size_t(0),
                                   ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)))
    except (ImportError, OSError, AttributeError):
        return 0
    return max(version, 0)


def set_dumpable(dumpable: bool) -> bool:
    """``prctl(PR_SET_DUMPABLE, dumpable)``: a process that is not dumpable has its ``/proc/<pid>/``
    files owned by root, so processes of the same user cannot read its memory or environment
    nor ptrace it (root can). Returns False when it could not be set."""
    try:
        return int(_libc().prctl(PR_SET_DUMPABLE, 1 if dumpable else 0, 0, 0, 0)) == 0
    except (ImportError, OSError, AttributeError):
        return False


def handled_rights(abi: int) -> int:
    """Every Landlock write right the kernel of ABI ``abi`` knows (reading and executing are
    never handled, so they stay allowed everywhere)."""
    rights = (FS_WRITE_FILE | FS_REMOVE_DIR | FS_REMOVE_FILE | FS_MAKE_CHAR | FS_MAKE_DIR | FS_MAKE_REG
              | FS_MAKE_SOCK | FS_MAKE_FIFO | FS_MAKE_BLOCK | FS_MAKE_SYM)
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    return rights


def restrict_writes(writable: List[str], *, scope_signals: bool = True) -> int:
    """Confine this thread (and every process and thread it starts later) with Landlock: writes
    only beneath the folders (or files) of ``writable``; a missing path is skipped. With
    ``scope_signals`` and ABI ≥ 6, signals to processes outside the domain are refused too.
    Returns the ABI used, 0 when Landlock is not available (nothing changed). Raises ``OSError``
    when the kernel refuses a step (nothing is half-applied: the domain is enforced last)."""
    abi = landlock_abi()
    if abi <= 0:
        return 0
    import ctypes

    class PathBeneath(ctypes.Structure):
        _pack_ = 1  # struct landlock_path_beneath_attr is packed: u64 + s32
        _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]

    class RulesetAttr(ctypes.Structure):
        _fields_ = [("handled_access_fs", ctypes.c_uint64), ("handled_access_net", ctypes.c_uint64),
                    ("scoped", ctypes.c_uint64)]

    libc = _libc()
    handled = handled_rights(abi)
    attr = RulesetAttr(handled, 0, SCOPE_SIGNAL if scope_signals and abi >= 6 else 0)
    size = ctypes.sizeof(RulesetAttr) if abi >= 6 else (16 if abi >= 4 else 8)
    ruleset = int(libc.syscall(SYS_LANDLOCK_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size),
                               ctypes.c_uint32(0)))
    if ruleset < 0:
        raise _oserror("landlock_create_ruleset")
    try:
        for path in writable:
            try:
                fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                rights = handled if os.path.isdir(path) else handled & FILE_RIGHTS
                rule = PathBeneath(rights, fd)
                if int(libc.syscall(SYS_LANDLOCK_ADD_RULE, ruleset, LANDLOCK_RULE_PATH_BENEATH,
                                    ctypes.byref(rule), ctypes.c_uint32(0))) != 0:
                    raise _oserror("landlock_add_rule %s" % path)
            finally:
                os.close(fd)
        if int(libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) != 0:
            raise _oserror("prctl(PR_SET_NO_NEW_PRIVS)")
        if int(libc.syscall(SYS_LANDLOCK_RESTRICT_SELF, ruleset, ctypes.c_uint32(0))) != 0:
            raise _oserror("landlock_restrict_self")
    finally:
        os.close(ruleset)
    return abi


def mount_read_only(folder: str) -> None:
    """In a new private mount namespace, bind-mount ``folder`` onto itself read-only (root
    only: needs ``CAP_SYS_ADMIN``). Raises ``OSError``."""
    import ctypes

    libc = _libc()
    if int(libc.unshare(CLONE_NEWNS)) != 0:
        raise _oserror("unshare(CLONE_NEWNS)")
    steps = ((None, b"/", MS_REC | MS_PRIVATE),  # nothing we do here propagates to the host
             (folder.encode(), folder.encode(), MS_BIND | MS_REC),
             (None, folder.encode(), MS_BIND | MS_REMOUNT | MS_RDONLY))
    for source, target, flags in steps:
        if int(libc.mount(source, target, None, ctypes.c_ulong(flags), None)) != 0:
            raise _oserror("mount %s" % target.decode())


def drop_privileges(user: Dict[str, Any]) -> None:
    """``setgroups``/``setgid``/``setuid`` to ``user`` (``uid``, ``gid``, ``groups``; ``name`` and
    ``home`` set ``USER``/``LOGNAME``/``HOME``). Raises ``OSError`` (not root)."""
    os.setgroups([int(g) for g in user.get("groups") or [user["gid"]]])
    os.setgid(int(user["gid"]))
    os.setuid(int(user["uid"]))
    if user.get("home"):
        os.environ["HOME"] = str(user["home"])
    if user.get("name"):
        os.environ["USER"] = os.environ["LOGNAME"] = str(user["name"])


def confine(options: Optional[Dict[str, Any]], joining: Any = None) -> bool:
    """Apply ``options`` (module docstring) to this instance; None or ``{}``: nothing (dev).
    ``joining``: the memory-cgroup join thread (``worker.apply_limits``) or None. A step that
    fails is logged and the instance goes on, except dropping to ``user``: an instance that
    was asked to run as another user and cannot exits (``SystemExit(EXIT_NO_USER)``). Returns True when
    writes are restricted (the worker then adds :func:`hint` to refused writes it logs)."""
    if not options:
        return False
    tmpdir = options.get("tmpdir")
    if tmpdir:
        os.environ["TMPDIR"] = str(tmpdir)
        tempfile = sys.modules.get("tempfile")
        if tempfile is not None:
            tempfile.__dict__["tempdir"] = None  # computed again from TMPDIR on next use (a zygote may have cached it)
    read_only = bool(options.get("read_only"))
    abi = landlock_abi() if read_only else 0
    mounted = False
    if read_only and abi == 0 and options.get("mount_fallback") and os.geteuid() == 0 and options.get("project"):
        try:
            mount_read_only(str(options["project"]))
            mounted = True
        except OSError as exc:
            log_line("cannot mount %s read-only: %s" % (options["project"], exc))
    user = options.get("user")
    if user:
        if joining is not None:
            joining.join(10.0)  # the cgroup join writes a root-only file
        try:
            drop_privileges(user)
        except (OSError, KeyError, ValueError) as exc:
            log_line("cannot run as user %s: %s" % (user.get("name", user.get("uid")), exc))
            raise SystemExit(EXIT_NO_USER) from exc
    if read_only and abi:
        writable = [str(p) for p in options.get("writable") or []] + ([str(tmpdir)] if tmpdir else [])
        try:
            restrict_writes(writable)
            sys.dont_write_bytecode = True
        except OSError as exc:
            abi = 0
            log_line("cannot make the file system read-only (Landlock): %s" % exc)
    set_dumpable(False)
    return bool(abi) or mounted


def hint(exc: BaseException) -> Optional[str]:
    """:data:`HINT` when ``exc`` (or an exception it was raised from) is a refused write
    (``PermissionError`` / ``EROFS`` naming a path), else None. Call it only in a confined
    instance (``confine`` returned True)."""
    current: Optional[BaseException] = exc
    for _ in range(5):
        if current is None:
            break
        if isinstance(current, OSError) and current.errno in (errno.EACCES, errno.EPERM, errno.EROFS) \
                and current.filename:
            return HINT
        current = current.__cause__ or current.__context__
    return None


def _oserror(what: str) -> OSError:
    import ctypes

    code = ctypes.get_errno()
    return OSError(code, "%s: %s" % (what, os.strerror(code)))
