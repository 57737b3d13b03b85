"""Issue 13 items 5 and 6 over real sockets: the next free port when the default one is taken,
an explicit taken port as an error, ``--open``, ``--env-file``, the watcher's
``--reload-dir``/``--reload-exclude``, and an empty project pointing at ``fnserve init``."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from devserver import DevServer
from startserver import StartServer
from watchfiles import Change

from fnserve.server import dev as devmodule
from fnserve.server.listen import PortTaken, bind_first_free
from fnserve.server.reloader import Plan, Reloader


@contextlib.contextmanager
def hold(port: int = 0) -> Iterator[int]:
    """Listen on 127.0.0.1:``port`` (0: any) for the duration; yields the port. Without
    SO_REUSEADDR, so nobody else can bind it."""
    sock = socket.socket()
    try:
        sock.bind(("127.0.0.1", port))
    except OSError:  # someone else holds it already: it is taken either way
        sock.close()
        yield port
        return
    sock.listen(1)
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


# ------------------------------------------------------------------ free port


def test_bind_first_free_moves_on_from_a_taken_default() -> None:
    with hold() as taken:
        sock = bind_first_free("127.0.0.1", taken, explicit=False)
        try:
            assert taken < sock.getsockname()[1] <= taken + 20
        finally:
            sock.close()


def test_bind_first_free_explicit_port_is_an_error() -> None:
    with hold() as taken, pytest.raises(PortTaken) as info:
        bind_first_free("127.0.0.1", taken, explicit=True)
    assert info.value.port == taken
    assert f"port {taken} is in use on 127.0.0.1" in str(info.value)
    assert "stop it, or pass another --port" in str(info.value)


class DefaultPortDev(DevServer):
    port_args = ()  # the default port (3000), so that a taken one is skipped


def test_dev_takes_the_next_free_port_when_the_default_is_taken(tmp_path: Path) -> None:
    with hold(3000):
        srv = DefaultPortDev("dev_vercel", tmp_path, "--no-install")
        try:
            srv.start()
            port = int(srv.url.rsplit(":", 1)[1])
            assert 3000 < port <= 3020
            srv.wait_for_line(rf"note: port 3000 is in use; serving on {port} instead \(pass --port to choose\)")
            assert httpx.get(srv.url + "/hello.txt", timeout=10).status_code == 200
        finally:
            srv.stop()


@pytest.mark.parametrize("flag", ["--port", "-p"])
def test_dev_explicit_taken_port_exits_2_naming_it(tmp_path: Path, flag: str) -> None:
    (tmp_path / "public").mkdir()
    (tmp_path / "public" / "index.html").write_text("hi")
    with hold() as taken:
        done = subprocess.run([sys.executable, "-m", "fnserve", "dev", str(tmp_path), flag, str(taken), "--no-install"],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"port {taken} is in use on 127.0.0.1" in done.stderr
    assert "pass another --port" in done.stderr


# ------------------------------------------------------------------ --open


def test_open_browser_calls_webbrowser(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[str] = []
    said: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    devmodule.open_browser("http://127.0.0.1:3000/", said.append)
    deadline = time.monotonic() + 5
    while not opened and time.monotonic() < deadline:
        time.sleep(0.01)
    assert opened == ["http://127.0.0.1:3000/"] and said == []


def test_open_browser_failure_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    said: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: False)
    devmodule.open_browser("http://x/", said.append)
    deadline = time.monotonic() + 5
    while not said and time.monotonic() < deadline:
        time.sleep(0.01)
    assert said == ["note: no browser to open; visit http://x/"]


def test_dev_open_launches_the_browser_with_the_url(tmp_path: Path) -> None:
    record = tmp_path / "opened.txt"
    script = tmp_path / "browser.py"
    script.write_text(f"import sys\nopen({str(record)!r}, 'w').write(sys.argv[1])\n")
    srv = DevServer("dev_vercel", tmp_path, "--no-install", "--open",
                    env={"BROWSER": f"{sys.executable} {script} %s", "DISPLAY": "", "WAYLAND_DISPLAY": ""})
    try:
        srv.start()
        deadline = time.monotonic() + 10
        while not record.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert record.read_text() == srv.url + "/"
        assert httpx.get(record.read_text() + "hello.txt", timeout=10).status_code == 200
    finally:
        srv.stop()


# ------------------------------------------------------------------ --env-file


@pytest.mark.parametrize("server", [DevServer, StartServer], ids=["dev", "start"])
def test_env_file_reaches_the_function(tmp_path: Path, server: type[DevServer]) -> None:
    srv = server("dev_vercel", tmp_path, "--env-file", "extra.env", "--env-file", "last.env",
                 *(["--no-install"] if server is DevServer else []))
    (srv.project / "extra.env").write_text("DEV_SECRET_TOKEN=from-extra\nDEV_LOCAL_ONLY=extra\n")
    (srv.project / "last.env").write_text("DEV_LOCAL_ONLY=last\n")
    try:
        srv.start()
        body = httpx.get(srv.url + "/api/env", timeout=30).json()
        assert body["secret"] == "from-extra" and body["local"] == "last"
    finally:
        srv.stop()


# ------------------------------------------------------------------ --reload-dir / --reload-exclude


def test_reloader_filters(tmp_path: Path) -> None:
    for folder in ("api", "lib", "tests"):
        (tmp_path / folder).mkdir()

    async def apply(plan: Plan) -> str:
        return "reload: " + plan.describe(tmp_path)

    only_api = Reloader(tmp_path, apply, dirs=("api",), exclude=("*_test.py",))
    assert only_api.watch_dirs() == [tmp_path / "api"]
    assert only_api.wanted(Change.modified, str(tmp_path / "api" / "a.py"))
    assert not only_api.wanted(Change.modified, str(tmp_path / "lib" / "b.py"))
    assert not only_api.wanted(Change.modified, str(tmp_path / "api" / "a_test.py"))
    assert only_api.wanted(Change.modified, str(tmp_path / "vercel.json"))  # the root's config files stay
    no_tests = Reloader(tmp_path, apply, exclude=("tests", "*.log"))
    assert [d.name for d in no_tests.watch_dirs()] == ["api", "lib"]
    assert not no_tests.wanted(Change.modified, str(tmp_path / "tests" / "x.py"))
    assert not no_tests.wanted(Change.modified, str(tmp_path / "lib" / "deep" / "tests" / "x.py"))
    assert no_tests.wanted(Change.modified, str(tmp_path / "lib" / "x.py"))
    assert Reloader(tmp_path, apply, dirs=(".",)).watch_dirs() == Reloader(tmp_path, apply).watch_dirs()
    line = asyncio.run(only_api.step([(Change.modified, str(tmp_path / "lib" / "b.py")),
                                      (Change.modified, str(tmp_path / "api" / "a.py"))]))
    assert line == "reload: api/a.py"


def test_dev_reload_exclude_skips_a_saved_file(tmp_path: Path) -> None:
    srv = DevServer("dev_vercel", tmp_path, "--no-install", "--reload-exclude", "pid.py")
    try:
        srv.start()
        mark = len(srv.lines)
        (srv.project / "api" / "pid.py").write_text((srv.project / "api" / "pid.py").read_text() + "\n# saved\n")
        time.sleep(1.5)
        (srv.project / "api" / "env.py").write_text((srv.project / "api" / "env.py").read_text() + "\n# saved\n")
        line = srv.wait_for_line(r"^.*reload: ", timeout=20, start=mark)
        assert "api/env.py" in line and "pid.py" not in line
        assert not any("pid.py" in ln and "reload" in ln for ln in srv.lines[mark:])
    finally:
        srv.stop()


# ------------------------------------------------------------------ an empty project


def test_empty_project_says_so_in_dev_and_start(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    srv = DevServer(empty, tmp_path, "--no-install")
    try:
        srv.start()
        answer = httpx.get(srv.url + "/", timeout=10)
        assert answer.status_code == 500  # not a silent 404: the page says why and what to do
        assert "nothing to serve" in answer.json()["error"]["detail"]
        assert "fnserve init" in answer.json()["error"]["detail"]
        srv.wait_for_line("Start a project with `fnserve init`")
    finally:
        srv.stop()
    done = subprocess.run([sys.executable, "-m", "fnserve", "start", str(empty), "--port", "0", "--no-install"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "fnserve init" in done.stdout + done.stderr


def test_saved_env_file_reloads_the_functions_env(tmp_path: Path) -> None:
    async def apply(plan: Plan) -> str:
        return "x"

    plan = Reloader(tmp_path, apply, env_files=("conf/extra.env",)).classify(
        [(Change.modified, str(tmp_path / "conf" / "extra.env"))])
    assert plan.config == [tmp_path / "conf" / "extra.env"]
    srv = DevServer("dev_vercel", tmp_path, "--no-install", "--env-file", "extra.env")
    (srv.project / "extra.env").write_text("DEV_SECRET_TOKEN=first\n")
    try:
        srv.start()
        assert httpx.get(srv.url + "/api/env", timeout=30).json()["secret"] == "first"
        mark = len(srv.lines)
        (srv.project / "extra.env").write_text("DEV_SECRET_TOKEN=second\n")
        srv.wait_for_line(r"reload: extra.env changed", timeout=20, start=mark)
        deadline = time.monotonic() + 20
        while httpx.get(srv.url + "/api/env", timeout=30).json()["secret"] != "second":
            assert time.monotonic() < deadline, srv.output()
            time.sleep(0.1)
    finally:
        srv.stop()
