"""End to end: the whole ``.vercel/output`` of ``fnserve build --target vercel`` (config.json
routes + static + every ``.func`` under Vercel's launcher) served by the peers' ``vclocal.py``
(shared/peers: this project's offline stand-in for Vercel's edge router, each function in the
launcher's IPC mode) and probed over HTTP for every example route; the answers must be
``fnserve start``'s. Skipped only when vclocal.py or a CPython 3.12 is missing."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest
from buildsupport import run_cli, serving, write_project
from test_target_vercel_launcher import LAMBDA
from vercelsupport import python312

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
VCLOCAL = next((p for p in (Path(os.environ.get("FNSERVE_VCLOCAL", "/nonexistent")),
                            ROOT.parent / "shared" / "peers" / "vclocal.py",
                            Path("/work/shared/peers/vclocal.py")) if p.is_file()), None)
PY312 = python312()
pytestmark = pytest.mark.skipif(VCLOCAL is None or PY312 is None,
                                reason="needs shared/peers/vclocal.py and a CPython 3.12")

Probe = tuple[str, str, bytes]
SHOWCASE: list[Probe] = [
    ("GET", "/", b""), ("GET", "/style.css", b""), ("GET", "/index.html", b""), ("GET", "/api/hello", b""),
    ("GET", "/api/hello?name=Ada", b""), ("POST", "/api/hello", b'{"name": "Bo"}'), ("GET", "/hello", b""),
    ("GET", "/old-hello", b""), ("GET", "/api/hello.py", b""), ("GET", "/api/users/7", b""),
    ("GET", "/api/users/7?y=2", b""), ("GET", "/api/flask_app", b""), ("GET", "/api/flask_app/hello/Cy", b""),
    ("GET", "/api/fastapi_app/items", b""), ("GET", "/api/fastapi_app/items/2", b""),
    ("GET", "/api/asgi_raw/x/y", b""), ("GET", "/api/files/a/b/c", b""), ("GET", "/api/files/one", b""),
    ("GET", "/api/nope", b""), ("GET", "/nope.css", b""), ("GET", "/api/users", b""),
]
EDGEONE: list[Probe] = [
    ("GET", "/api/hello", b""), ("GET", "/api/users/3", b""), ("DELETE", "/api/users/3", b""),
    ("GET", "/api/flaskapp/users", b""), ("POST", "/api/flaskapp/users", b'{"name": "Di"}'),
    ("GET", "/api/flaskapp", b""), ("GET", "/api/anything/else", b""), ("GET", "/api", b""), ("GET", "/nope", b""),
    ("GET", "/api/lam/9?x=1", b""),
]

ZERO_CONFIG = {  # the zero-config app (SPEC §3.3): after a rewrite it sees the rewritten path
    "app.py": ("from flask import Flask, request\n\napp = Flask(__name__)\n\n\n"
               "@app.route('/', defaults={'p': ''}, methods=['GET', 'POST'])\n"
               "@app.route('/<path:p>', methods=['GET', 'POST'])\n"
               "def anything(p):\n"
               "    return {'path': request.path, 'query': request.query_string.decode(), 'method': request.method}\n"),
    "public/hi.txt": "hello\n", "requirements.txt": "flask\n",
    "vercel.json": '{"rewrites": [{"source": "/alias/:x", "destination": "/real/:x"}]}',
}
APP: list[Probe] = [("GET", "/", b""), ("GET", "/hi.txt", b""), ("GET", "/some/path?q=1", b""),
                    ("POST", "/alias/7", b"x"), ("GET", "/app", b"")]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(url: str, probes: list[Probe]) -> list[tuple[int, str | None, bytes]]:
    """(status, Location, body) per probe; the body of a redirect or of a 404 no function wrote is
    the server's own page, not compared."""
    out = []
    with httpx.Client(base_url=url, timeout=60, follow_redirects=False) as client:
        for method, target, body in probes:
            resp = client.request(method, target, content=body or None)
            own = 300 <= resp.status_code < 400 or (resp.status_code == 404 and not target.startswith("/api/anything"))
            out.append((resp.status_code, resp.headers.get("location"), b"" if own else resp.content))
    return out


class Vclocal:
    """``vclocal.py serve PROJECT --port P --python PY312`` until ``front proxy on`` is printed
    (every function started under the launcher first)."""

    def __init__(self, project: Path) -> None:
        assert VCLOCAL is not None and PY312 is not None
        self.port = free_port()
        self.lines: list[str] = []
        self.proc = subprocess.Popen([PY312, str(VCLOCAL), "serve", str(project), "--port", str(self.port),
                                      "--python", PY312], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + 120
        while not any("front proxy on" in line for line in list(self.lines)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("vclocal did not start:\n" + "".join(self.lines))
            time.sleep(0.1)

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.mark.parametrize(("example", "extra", "probes"), [
    ("showcase", {}, SHOWCASE),
    ("edgeone", {"cloud-functions/api/lam/[id].py": LAMBDA}, EDGEONE),
    ("zero-config", ZERO_CONFIG, APP),
])
def test_vercel_output_served_by_vclocal_like_fnserve_start(tmp_path, example, extra, probes):
    project = tmp_path / example
    if (EXAMPLES / example).is_dir():
        shutil.copytree(EXAMPLES / example, project)
    write_project(project, extra)
    with serving(str(project), "--no-install") as url:
        expected = answers(url, probes)
    result = run_cli("build", str(project), "--no-install", "--target", "vercel")
    assert result.exit_code == 0, result.output
    server = Vclocal(project)
    try:
        got = answers(f"http://127.0.0.1:{server.port}", probes)
    finally:
        server.stop()
    for probe, mine, theirs in zip(probes, got, expected):
        assert mine == theirs, f"{probe[0]} {probe[1]}: vclocal {mine!r} != fnserve start {theirs!r}"
    assert sum(200 <= status < 300 for status, _l, _b in got) >= len(probes) // 2
    served = "".join(server.lines)
    assert "server-started" in served and "NO_RESPONSE_FROM_FUNCTION" not in served
