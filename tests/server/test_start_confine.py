"""What a function can reach in ``fnserve start`` (issue 10 items 8 and 9), over real servers:
the project tree is read-only to functions (Landlock), each instance has its own ``TMPDIR``
(removed when it exits), functions get an allow-list of the host's environment, the front and
other instances cannot be read through ``/proc``, ``--user`` runs instances as another user.
``fnserve dev`` is unaffected. The projects live under ``/var/tmp``: ``/tmp`` is writable to
functions, so a project there is not protected (``start`` warns about it)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from devserver import DevServer
from startserver import StartServer

from fnserve.runtime.confine import HINT, landlock_abi
from fnserve.server.start import confinement_problems
from fnserve.supervisor.target import DEFAULT_ENV_PASSTHROUGH, function_env

ROOT = os.geteuid() == 0
NOBODY = 65534
needs_landlock = pytest.mark.skipif(landlock_abi() == 0, reason="this kernel has no Landlock")

PROBE = '''\
import json, os, sys, tempfile
from urllib.parse import parse_qs


def attempt(fn):
    try:
        return {"ok": True, "value": fn()}
    except OSError as exc:
        return {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}


def append(path):
    with open(path, "a") as f:
        f.write("# defaced\\n")
    return path


def environ_of(pid):
    with open("/proc/%s/environ" % pid, "rb") as f:
        return len(f.read())


def status_of(pid):
    with open("/proc/%s/status" % pid, "rb") as f:
        return len(f.read())


OPS = {
    "write": lambda q: attempt(lambda: append(q["path"])),
    "tmp": lambda q: attempt(lambda: append(os.path.join(tempfile.gettempdir(), "x.txt"))),
    "environ": lambda q: attempt(lambda: environ_of(q["pid"])),
    "status": lambda q: attempt(lambda: status_of(q["pid"])),
    "signal": lambda q: attempt(lambda: os.kill(int(q["pid"]), 0)),
    "raise": lambda q: append(q["path"]),
}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    q = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    if q.get("op") == "exit":
        os._exit(0)
    if q.get("op") in OPS:
        body = OPS[q["op"]](q)
    else:
        import ctypes

        body = {"pid": os.getpid(), "ppid": os.getppid(), "uid": os.getuid(), "file": __file__, "env": dict(os.environ),
                "tmpdir": tempfile.gettempdir(), "dumpable": ctypes.CDLL(None).prctl(3, 0, 0, 0, 0)}
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": json.dumps(body).encode()})
'''


@pytest.fixture
def project() -> Iterator[Path]:
    """A project with two ASGI probe functions, outside /tmp, readable by every user."""
    folder = Path(tempfile.mkdtemp(prefix="fnserve-confine-", dir="/var/tmp"))
    folder.chmod(0o755)
    (folder / "api").mkdir()
    (folder / "public").mkdir()
    (folder / "api" / "probe.py").write_text(PROBE)
    (folder / "api" / "other.py").write_text(PROBE)
    (folder / "public" / "index.html").write_text("<p>hi</p>\n")
    (folder / ".env").write_text("FROM_DOTENV=yes\n")
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def get(server: DevServer, function: str, **query: str) -> dict:
    r = httpx.get(f"{server.url}/api/{function}", params=query, timeout=20)
    assert r.status_code == 200, r.text
    return r.json()


def _gone(path: str, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not os.path.exists(path)


@needs_landlock
def test_start_functions_cannot_write_the_project_but_tmp_and_their_own_tmpdir(project: Path, tmp_path: Path) -> None:
    server = StartServer(project, tmp_path)
    server.start()
    try:
        info = get(server, "probe")
        own_source = info["file"]  # the snapshot copy the instance runs
        before = (project / "api" / "other.py").read_text()
        for target in (project / "public" / "defaced.txt", project / "api" / "other.py", Path(own_source),
                       project / ".fnserve" / "pycache" / "x.pyc"):
            result = get(server, "probe", op="write", path=str(target))
            assert not result["ok"]
            assert result["error"] == f"PermissionError: [Errno 13] Permission denied: '{target}'"
        assert not (project / "public" / "defaced.txt").exists()
        assert (project / "api" / "other.py").read_text() == before
        assert httpx.get(server.url + "/defaced.txt", timeout=5).status_code == 404
        assert list((project / ".fnserve" / "pycache").rglob("probe*.pyc"))  # compiled by fnserve, not by functions
        if landlock_abi() >= 6:  # signals are scoped to the instance: not the front, not its zygote
            for pid in (server.proc.pid, info["ppid"]):
                assert get(server, "probe", op="signal", pid=str(pid)) == {
                    "ok": False, "error": "PermissionError: [Errno 1] Operation not permitted"}
            assert get(server, "probe", op="signal", pid=str(info["pid"]))["ok"]

        tmpdir = info["tmpdir"]
        assert info["env"]["TMPDIR"] == tmpdir and os.path.isdir(tmpdir)
        assert get(server, "probe", op="tmp") == {"ok": True, "value": os.path.join(tmpdir, "x.txt")}
        scratch = tempfile.mktemp(prefix="fnserve-confine-", dir="/tmp")
        try:
            assert get(server, "probe", op="write", path=scratch)["ok"]  # plain /tmp stays writable (Vercel)
        finally:
            Path(scratch).unlink(missing_ok=True)
        assert get(server, "probe", op="write", path="/dev/null")["ok"]

        other = get(server, "other")
        assert other["tmpdir"] != tmpdir  # one TMPDIR per instance
        assert httpx.get(server.url + "/api/other", params={"op": "exit"}, timeout=10).status_code == 502
        assert _gone(other["tmpdir"])  # removed once its instance has exited
        assert os.path.isdir(tmpdir)
    finally:
        server.stop()


@needs_landlock
def test_a_refused_write_is_logged_with_the_path_and_a_hint(project: Path, tmp_path: Path) -> None:
    server = StartServer(project, tmp_path)
    server.start()
    try:
        target = project / "public" / "x.txt"
        r = httpx.get(server.url + "/api/probe", params={"op": "raise", "path": str(target)}, timeout=20)
        assert r.status_code == 500
        assert str(target) not in r.text  # production bodies say only that the function failed
        server.wait_for_line(rf"PermissionError: \[Errno 13\] Permission denied: '{target}'")
        server.wait_for_line(r"hint: " + HINT.replace("$", r"\$").replace("(", r"\(").replace(")", r"\)"))
        assert not target.exists()
    finally:
        server.stop()


def test_read_only_code_off_leaves_the_project_writable(project: Path, tmp_path: Path) -> None:
    server = StartServer(project, tmp_path, "--no-read-only-code")
    server.start()
    try:
        target = project / "public" / "written.txt"
        assert get(server, "probe", op="write", path=str(target))["ok"]
        assert target.exists()
        assert get(server, "probe")["tmpdir"] != tempfile.gettempdir()  # still a TMPDIR of its own
    finally:
        server.stop()


def test_dev_is_unaffected(project: Path, tmp_path: Path) -> None:
    server = DevServer(project, tmp_path, env={"SECRET_OF_THE_HOST": "x"})
    server.start()
    try:
        target = project / "public" / "written.txt"
        assert get(server, "probe", op="write", path=str(target))["ok"]
        assert target.read_text() == "# defaced\n"
        info = get(server, "probe")
        assert info["env"].get("SECRET_OF_THE_HOST") == "x"  # dev: the whole shell environment
        assert "TMPDIR" not in info["env"] or info["env"]["TMPDIR"] == os.environ.get("TMPDIR")
    finally:
        server.stop()


def test_start_passes_an_allow_list_of_the_host_environment(project: Path, tmp_path: Path) -> None:
    env = {"SECRET_OF_THE_HOST": "x", "ALLOWED_ONE": "1", "LC_TIME": "C", "FNSERVE_ENV_PASSTHROUGH": "ALLOWED_*"}
    server = StartServer(project, tmp_path, env=env)
    server.start()
    try:
        seen = get(server, "probe")["env"]
        assert "SECRET_OF_THE_HOST" not in seen
        assert seen["ALLOWED_ONE"] == "1" and seen["LC_TIME"] == "C" and seen["FROM_DOTENV"] == "yes"
        assert seen["PATH"] and not any(k.startswith("FNSERVE_") for k in seen)
    finally:
        server.stop()


def test_function_env_allow_list() -> None:
    base = {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C", "AWS_SECRET": "s", "DB_URL": "postgres://",
            "FNSERVE_PORT": "1", "TZ": "UTC"}
    assert function_env({"X": "1"}, base) == {**{k: v for k, v in base.items() if k != "FNSERVE_PORT"}, "X": "1"}
    assert function_env({"X": "1"}, base, passthrough=()) == {"PATH": "/bin", "HOME": "/h", "LC_ALL": "C",
                                                              "TZ": "UTC", "X": "1"}
    assert function_env({}, base, passthrough=("AWS_*",))["AWS_SECRET"] == "s"
    assert function_env({"DB_URL": "project"}, base, passthrough=())["DB_URL"] == "project"  # the project's win
    assert "PATH" in DEFAULT_ENV_PASSTHROUGH and "SSL_CERT_FILE" in DEFAULT_ENV_PASSTHROUGH


def test_a_project_under_tmp_is_reported_as_not_protected(tmp_path: Path) -> None:
    from fnserve.config import load_config

    config = load_config(tmp_path, {}, {}, mode="start")
    problems = confinement_problems(tmp_path, config, None)
    if str(tmp_path).startswith("/tmp/"):
        assert any("is inside /tmp" in p for p in problems)
    off = load_config(tmp_path, {"read_only_code": False}, {}, mode="start")
    assert confinement_problems(tmp_path, off, None) == []


def test_same_user_functions_cannot_read_the_front_or_another_instance(project: Path, tmp_path: Path) -> None:
    """The front, the zygotes and the instances are not dumpable, so a function running as the
    same user cannot read their /proc/<pid>/environ (nor mem); its own /proc files it can, but for
    ``environ`` and ``mem`` (root-only when a process is not dumpable: ``os.environ`` is the way to
    its environment). Root may read
    anything, so as root the instances run as nobody (--user): another instance is then of the
    same user, the front is not."""
    server = StartServer(project, tmp_path, *(("--user", "nobody") if ROOT else ()))
    server.start()
    try:
        assert server.proc is not None
        other = get(server, "other")
        probe = get(server, "probe")
        assert probe["dumpable"] == other["dumpable"] == 0
        own = get(server, "probe", op="status", pid=str(probe["pid"]))  # its own /proc files stay readable
        assert own["ok"] and own["value"] > 0
        for pid in (server.proc.pid, other["pid"]):
            result = get(server, "probe", op="environ", pid=str(pid))
            assert result == {"ok": False, "error": f"PermissionError: [Errno 13] Permission denied: '/proc/{pid}/environ'"}
        if ROOT:  # a process that is not dumpable has its /proc files owned by root
            assert os.stat(f"/proc/{other['pid']}/environ").st_uid == 0
    finally:
        server.stop()


@pytest.mark.skipif(not ROOT, reason="--user needs fnserve start to run as root")
@needs_landlock
def test_user_runs_instances_as_that_user(project: Path, tmp_path: Path) -> None:
    server = StartServer(project, tmp_path, "--user", "nobody")
    server.start()
    try:
        info = get(server, "probe")
        assert info["uid"] == NOBODY
        assert info["env"]["USER"] == "nobody"
        assert os.stat(info["tmpdir"]).st_uid == NOBODY
        assert get(server, "probe", op="tmp")["ok"]
        assert not get(server, "probe", op="write", path=str(project / "public" / "x.txt"))["ok"]
        result = get(server, "probe", op="environ", pid=str(server.proc.pid))
        assert not result["ok"] and "Permission denied" in result["error"]
    finally:
        server.stop()


def test_user_without_root_is_a_clear_error(project: Path, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from fnserve.server.start import run_start

    if ROOT:
        monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert run_start(project, {"user": "nobody"}) == 2
    assert "--user: user: running instances as 'nobody' needs fnserve start to run as root" in capsys.readouterr().err


def test_unknown_user_is_a_clear_error(project: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "fnserve", "start", str(project), "--port", "0", "--no-install",
         "--user", "no-such-user-fnserve"], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "user" in proc.stderr and ("no user 'no-such-user-fnserve'" in proc.stderr or "needs fnserve start to run as root" in proc.stderr)


def test_a_reload_that_makes_the_project_writable_warns(project: Path, tmp_path: Path) -> None:
    """A SIGHUP that changes writable_path is checked as the start was: one warning naming it."""
    server = StartServer(project, tmp_path)
    server.start()
    try:
        (server.project / "fnserve.toml").write_text('writable_path = ["."]\n')
        mark = len(server.lines)
        server.signal(signal.SIGHUP)
        server.wait_for_line(r"reload: done", start=mark, timeout=30)
        warned = [line for line in server.lines[mark:] if "read-only-code:" in line]
        assert any(f"is inside {server.project}" in line for line in warned), server.lines[mark:]
    finally:
        server.stop()
