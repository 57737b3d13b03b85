"""``runtime.confine`` (issue 10 items 8-9) in forked children: Landlock write confinement, the
dumpable flag, the per-instance TMPDIR, the root-only steps (read-only bind mount, another
user) and the hint for refused writes. Each test confines a child, never the test process."""

from __future__ import annotations

import errno
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fnserve.runtime import confine as c

ROOT = os.geteuid() == 0
needs_landlock = pytest.mark.skipif(c.landlock_abi() == 0, reason="this kernel has no Landlock")
needs_root = pytest.mark.skipif(not ROOT, reason="needs root")


def in_child(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a forked child; its JSON-able result (or ``{"raised": repr}``) comes back."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(r)
        try:
            out = fn()
        except BaseException as exc:  # noqa: B902
            out = {"raised": repr(exc)}
        os.write(w, json.dumps(out).encode())
        os._exit(0)
    os.close(w)
    data = b""
    while chunk := os.read(r, 65536):
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return json.loads(data)


def attempt(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except OSError as exc:
        return str(exc)
    return "ok"


@pytest.fixture
def outside() -> Any:
    """A folder functions must not write (not beneath /tmp)."""
    folder = Path(tempfile.mkdtemp(prefix="fnserve-confine-unit-", dir="/var/tmp"))
    (folder / "existing.txt").write_text("original\n")
    yield folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def test_landlock_abi_is_a_version_or_zero() -> None:
    assert isinstance(c.landlock_abi(), int) and c.landlock_abi() >= 0


@needs_landlock
def test_restrict_writes_allows_only_the_listed_folders(outside: Path, tmp_path: Path) -> None:
    existing = outside / "existing.txt"

    def child() -> dict[str, Any]:
        abi = c.restrict_writes([str(tmp_path), "/dev"])
        return {
            "abi": abi,
            "create": attempt(lambda: open(outside / "new.txt", "w").close()),
            "append": attempt(lambda: open(existing, "a").close()),
            "truncate": attempt(lambda: os.truncate(existing, 0)),
            "unlink": attempt(lambda: os.unlink(existing)),
            "mkdir": attempt(lambda: os.mkdir(outside / "d")),
            "rename": attempt(lambda: os.rename(existing, outside / "moved.txt")),
            "inside": attempt(lambda: (tmp_path / "x.txt").write_text("x")),
            "devnull": attempt(lambda: open("/dev/null", "w").write("x")),
            "read": existing.read_text(),
            "signal_parent": attempt(lambda: os.kill(os.getppid(), 0)),
            "signal_self": attempt(lambda: os.kill(os.getpid(), 0)),
        }

    out = in_child(child)
    assert out["abi"] == c.landlock_abi()
    assert out["create"] == f"[Errno 13] Permission denied: '{outside / 'new.txt'}'"
    assert out["append"] == f"[Errno 13] Permission denied: '{existing}'"
    for key in ("truncate", "unlink", "mkdir", "rename"):
        assert "Permission denied" in out[key] or "Operation not permitted" in out[key], key
    assert out["inside"] == out["devnull"] == out["signal_self"] == "ok"
    assert out["read"] == "original\n"  # reading stays allowed
    if c.landlock_abi() >= 6:
        assert "Operation not permitted" in out["signal_parent"]  # signals scoped to the domain
    assert existing.read_text() == "original\n" and not (outside / "new.txt").exists()


@needs_landlock
def test_confine_sets_tmpdir_and_read_only(outside: Path, tmp_path: Path) -> None:
    tmpdir = tmp_path / "instance-tmp"
    tmpdir.mkdir()

    def child() -> dict[str, Any]:
        tempfile.gettempdir()  # cached before: confine must reset it
        confined = c.confine({"tmpdir": str(tmpdir), "read_only": True, "writable": ["/dev"],
                              "project": str(outside), "user": None})
        return {"confined": confined, "TMPDIR": os.environ["TMPDIR"], "gettempdir": tempfile.gettempdir(),
                "bytecode": sys.dont_write_bytecode,
                "write_tmpdir": attempt(lambda: open(os.path.join(tempfile.gettempdir(), "a"), "w").close()),
                "write_project": attempt(lambda: open(outside / "x", "w").close()),
                "dumpable": c._libc().prctl(3, 0, 0, 0, 0)}

    out = in_child(child)
    assert out["confined"] is True and out["bytecode"] is True
    assert out["TMPDIR"] == out["gettempdir"] == str(tmpdir)
    assert out["write_tmpdir"] == "ok" and (tmpdir / "a").exists()
    assert out["write_project"] == f"[Errno 13] Permission denied: '{outside / 'x'}'"
    assert out["dumpable"] == 0


def test_confine_without_options_does_nothing() -> None:
    def child() -> dict[str, Any]:
        before = dict(os.environ)
        return {"confined": c.confine(None), "same": dict(os.environ) == before,
                "dumpable": c._libc().prctl(3, 0, 0, 0, 0)}

    assert in_child(child) == {"confined": False, "same": True, "dumpable": 1}


def test_confine_read_only_off_keeps_writes_but_not_dumpable(outside: Path) -> None:
    def child() -> dict[str, Any]:
        confined = c.confine({"read_only": False, "project": str(outside)})
        return {"confined": confined, "write": attempt(lambda: open(outside / "x", "w").close()),
                "dumpable": c._libc().prctl(3, 0, 0, 0, 0)}

    assert in_child(child) == {"confined": False, "write": "ok", "dumpable": 0}


def test_a_process_that_is_not_dumpable_hides_its_environ_from_its_own_user() -> None:
    """Two processes of one unprivileged user (nobody when we are root): the one that set
    ``PR_SET_DUMPABLE`` 0 cannot be read by the other; a dumpable one can."""

    def child() -> dict[str, Any]:
        if ROOT:
            c.drop_privileges({"uid": 65534, "gid": 65534, "groups": [65534]})
        out = {}
        for dumpable in (True, False):
            c.set_dumpable(dumpable)
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r)
                result = attempt(lambda: open(f"/proc/{os.getppid()}/environ", "rb").read())
                os.write(w, result.encode())
                os._exit(0)
            os.close(w)
            out[str(dumpable)] = os.read(r, 4096).decode()
            os.waitpid(pid, 0)
        return out

    out = in_child(child)
    assert out["True"] == "ok"
    assert "Permission denied" in out["False"]


@needs_root
def test_drop_privileges_runs_as_the_user() -> None:
    def child() -> dict[str, Any]:
        c.drop_privileges({"uid": 65534, "gid": 65534, "groups": [65534], "name": "nobody", "home": "/nonexistent"})
        return {"uid": os.getuid(), "euid": os.geteuid(), "gid": os.getgid(), "groups": os.getgroups(),
                "HOME": os.environ["HOME"], "USER": os.environ["USER"],
                "back": attempt(lambda: os.setuid(0))}

    out = in_child(child)
    assert (out["uid"], out["euid"], out["gid"], out["groups"]) == (65534, 65534, 65534, [65534])
    assert (out["HOME"], out["USER"]) == ("/nonexistent", "nobody")
    assert "Operation not permitted" in out["back"]


@needs_root
def test_confine_exits_when_it_cannot_become_the_user() -> None:
    def child() -> dict[str, Any]:
        c.drop_privileges({"uid": 65534, "gid": 65534, "groups": [65534]})
        try:
            c.confine({"user": {"uid": 0, "gid": 0, "groups": [0]}})
        except SystemExit as exc:
            return {"exit": exc.code}
        return {"exit": None}

    assert in_child(child) == {"exit": 70}


@needs_root
def test_mount_fallback_makes_the_project_read_only(outside: Path) -> None:
    def child() -> dict[str, Any]:
        c.mount_read_only(str(outside))
        return {"write": attempt(lambda: open(outside / "x", "w").close()),
                "read": (outside / "existing.txt").read_text()}

    out = in_child(child)
    if "raised" in out:
        pytest.skip(f"no mount namespaces here: {out['raised']}")
    assert out == {"write": f"[Errno 30] Read-only file system: '{outside / 'x'}'", "read": "original\n"}
    (outside / "y").write_text("the host's view is unchanged")  # the mount was private to the child


def test_hint_names_refused_writes_only() -> None:
    refused = PermissionError(errno.EACCES, "Permission denied", "/srv/app/public/x.txt")
    assert c.hint(refused) == c.HINT
    assert c.hint(OSError(errno.EROFS, "Read-only file system", "/srv/app/x")) == c.HINT
    assert c.hint(ValueError("x")) is None
    assert c.hint(PermissionError(errno.EPERM, "Operation not permitted")) is None  # no path: not a write
    try:
        try:
            raise refused
        except OSError as exc:
            raise RuntimeError("saving failed") from exc
    except RuntimeError as wrapped:
        assert c.hint(wrapped) == c.HINT
    assert "/tmp" in c.HINT and "$TMPDIR" in c.HINT


def test_handled_rights_grow_with_the_abi() -> None:
    assert c.handled_rights(1) & c.FS_REFER == 0
    assert c.handled_rights(2) & c.FS_REFER
    assert c.handled_rights(3) & c.FS_TRUNCATE
    assert c.handled_rights(7) & (1 << 2) == 0  # READ_FILE is never handled: reading stays allowed


@needs_root
def test_without_landlock_confine_falls_back_to_a_read_only_mount(outside: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(c, "landlock_abi", lambda: 0)  # an old kernel
    tmpdir = outside.parent / (outside.name + "-tmp")  # beside it: reachable by nobody, not beneath the mount
    tmpdir.mkdir()
    tmpdir.chmod(0o777)
    outside.chmod(0o777)  # nobody could write it, but for the read-only mount

    def child() -> dict[str, Any]:
        confined = c.confine({"tmpdir": str(tmpdir), "read_only": True, "writable": ["/dev"], "project": str(outside),
                              "mount_fallback": True,
                              "user": {"uid": 65534, "gid": 65534, "groups": [65534], "name": "nobody"}})
        return {"confined": confined, "uid": os.getuid(),
                "write": attempt(lambda: open(outside / "x", "w").close()),
                "tmp": attempt(lambda: open(tmpdir / "x", "w").close())}

    try:
        out = in_child(child)
    finally:
        import shutil

        shutil.rmtree(tmpdir, ignore_errors=True)
    if "raised" in out:
        pytest.skip(f"no mount namespaces here: {out['raised']}")
    assert out["confined"] is True and out["uid"] == 65534
    assert out["write"] == f"[Errno 30] Read-only file system: '{outside / 'x'}'"
    assert out["tmp"] == "ok"
