"""Test helpers for the front server and ``fnserve dev`` (owned with issue 4's tests).

* ``serve_app(app, **options)``: run an ASGI app on uvicorn (port 0, 127.0.0.1) in a thread; yields the
  base URL; stops it on exit. For in-process tests of the pure parts.
* ``DevServer``: werkzeug's ``DevServerClient`` idea — copy ``tests/projects/<case>/`` to a temp
  folder, start ``python -m fnserve dev <dir> --port 0`` in its own process group, parse the URL
  it prints, wait until it answers, and kill the group at the end.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn

PROJECTS = Path(__file__).parent / "projects"
URL_RE = re.compile(r"fnserve dev: (http://[0-9.]+:[0-9]+)")


@contextlib.contextmanager
def serve_app(app, **options) -> Iterator[str]:
    """``options``: more ``uvicorn.Config`` arguments (``frontdoor.uvicorn_options(...)``: fnserve's protocol)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False, **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


def raw_get(base: str, target: str, headers: str = "") -> tuple[int, bytes]:
    """Send ``GET target`` byte-exact (no client-side normalisation of ``..``); return
    ``(status, whole response)``."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


class DevServer:
    """A ``fnserve dev`` subprocess on a copy of a fixture project (``port_args``: how it is told
    its port; ``()`` leaves the default)."""

    port_args: tuple[str, ...] = ("--port", "0")

    def __init__(self, case: str | Path, tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> None:
        if Path(case).is_absolute():  # a project made by the test itself (e.g. fnserve init): used in place
            self.project = Path(case)
        else:
            self.project = tmp_path / case
            shutil.copytree(PROJECTS / case, self.project)
        self.args = args
        self.env = {**os.environ, **(env or {})}
        self.lines: list[str] = []
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30.0) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fnserve", "dev", str(self.project), *self.port_args, *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
            start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = URL_RE.search(line)
                if m:
                    self.url = m.group(1)
                    break
            if self.url:
                break
            if self.proc.poll() is not None:
                raise RuntimeError("fnserve dev exited:\n" + self.output())
            time.sleep(0.05)
        else:
            raise RuntimeError("fnserve dev printed no URL:\n" + self.output())
        while time.monotonic() < deadline:
            try:
                httpx.get(self.url + "/__fnserve_ready_probe__", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise RuntimeError("fnserve dev does not answer:\n" + self.output())

    def _pump(self) -> None:
        assert self.proc and self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float = 10.0, start: int = 0) -> str:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if rx.search(line):
                    return line
            time.sleep(0.02)
        raise AssertionError(f"no line matching {pattern!r} in:\n{self.output()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
