"""Helpers of the build tests: a small scenario project written in code (its shape matters more
than its files' content), and running the CLI in-process."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from fnserve.cli import main

HANDLER = (
    "from http.server import BaseHTTPRequestHandler\n"
    "{imports}"
    "class handler(BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        body = {body}\n"
    "        self.send_response(200)\n"
    "        self.send_header('Content-Type', 'text/plain')\n"
    "        self.end_headers()\n"
    "        self.wfile.write(body.encode())\n"
)


def handler(body: str, imports: str = "") -> str:
    """A Vercel handler file answering GET with the Python expression ``body`` (a str)."""
    return HANDLER.format(imports=imports, body=body)


def write_project(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def scenario(root: Path) -> Path:
    """Functions, a helper, a template read at request time, excluded folders, public/, .env,
    vercel.json with excludeFiles/includeFiles and a redirect."""
    return write_project(root, {
        "api/hello.py": handler("'hello ' + os.environ.get('GREETING', '?')", "import os\n"),
        "api/page.py": handler("open(os.path.join(os.path.dirname(__file__), '..', 'templates', 'page.html')).read()",
                               "import os\n"),
        "api/users/[id].py": handler("'user ' + __import__('api._lib.names', fromlist=['x']).NAME"),
        "api/_lib/names.py": "NAME = 'ann'\n",
        "templates/page.html": "<p>page</p>\n",
        "data/big.bin": "x" * 2000,
        "tests/fixture.json": "{}\n",
        "tests/test_x.py": "def test_x():\n    pass\n",
        "scripts/tool.py": "print('tool')\n",
        "public/index.html": "<h1>home</h1>\n",
        "public/css/site.css": "body{}\n",
        ".env": "GREETING=from-dotenv\n",
        "requirements.txt": "",
        "vercel.json": json.dumps({
            "redirects": [{"source": "/old", "destination": "/api/hello", "permanent": False}],
            "functions": {"api/hello.py": {"excludeFiles": "data/**", "includeFiles": "tests/fixture.json",
                                           "maxDuration": 7}},
        }),
    })


def run_cli(*args: str, env: dict[str, str] | None = None) -> Result:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FNSERVE_")}
    environ.update(env or {})
    return CliRunner().invoke(main, list(args), env=environ, catch_exceptions=False)


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """rel path → (size, mtime_ns) of every file outside .fnserve/."""
    out = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root).as_posix()
        if path.is_file() and not rel.startswith(".fnserve"):
            info = path.stat()
            out[rel] = (info.st_size, info.st_mtime_ns)
    return out


URL_RE = re.compile(r"fnserve start: (http://[0-9.]+:[0-9]+)")


class ServerProcess:
    """``python -m fnserve start ARGS --port 0`` in its own session; ``url`` parsed from its output;
    ``stop()`` sends SIGTERM and waits (then kills the group)."""

    def __init__(self, *args: str) -> None:
        self.args = args
        self.lines: list[str] = []
        self.url = ""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FNSERVE_")}
        self.proc = subprocess.Popen([sys.executable, "-m", "fnserve", "start", *args, "--port", "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                                     start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def wait_ready(self, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                found = URL_RE.search(line)
                if found:
                    self.url = found.group(1)
                    return self.url
            if self.proc.poll() is not None:
                raise RuntimeError("fnserve start exited:\n" + self.output())
            time.sleep(0.05)
        raise RuntimeError("fnserve start printed no URL:\n" + self.output())

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
        return self.proc.wait(5)


@contextlib.contextmanager
def serving(*args: str) -> Iterator[str]:
    server = ServerProcess(*args)
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def responses(url: str, paths: list[tuple[str, str]]) -> list[tuple[str, str, int, str | None, bytes]]:
    """``(method, path)`` → (method, path, status, content-type, body), redirects not followed."""
    out = []
    with httpx.Client(base_url=url, timeout=30, follow_redirects=False) as client:
        for method, path in paths:
            resp = client.request(method, path)
            out.append((method, path, resp.status_code, resp.headers.get("content-type"), resp.content))
    return out
