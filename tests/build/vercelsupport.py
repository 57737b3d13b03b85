"""Running a ``.vercel/output`` the way Vercel does, for the ``vercel`` target tests.

- ``python312()``: a CPython 3.12 (the ``.func``'s ``_vendor`` is built for it), or None.
- ``resolve(config, functions, method, target)``: which function a request reaches through the
  ``config.json`` routes fnserve writes, and the request target the function receives (Vercel:
  the original path, the original query first, then the query the route's ``dest`` adds).
- ``IpcFunction``: a ``.func`` under Vercel's launcher in its IPC mode (``VERCEL_IPC_PATH`` set:
  ``vercel_runtime.vc_init`` starts its own HTTP server and announces its port with a
  ``server-started`` message, NUL-delimited JSON, on our unix socket).
- ``invoke_lambda(func, requests)``: the same ``.func`` in Lambda-event mode (no IPC: the
  trampoline exposes ``vc_handler(event, context)``; ``event["body"]`` is the request as JSON).
"""

from __future__ import annotations

import base64
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import httpx


def python312() -> str | None:
    """A working CPython 3.12: ``$FNSERVE_TEST_PY312``, ``uv python find 3.12``, pyenv's, PATH's."""
    candidates = [os.environ.get("FNSERVE_TEST_PY312", "")]
    try:
        import uv

        found = subprocess.run([uv.find_uv_bin(), "python", "find", "3.12", "--no-python-downloads"],
                               capture_output=True, text=True, timeout=30)
        candidates.append(found.stdout.strip())
    except (ImportError, OSError, subprocess.SubprocessError):
        pass
    root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    candidates += sorted(glob.glob(f"{root}/versions/3.12*/bin/python3.12"))
    candidates.append(shutil.which("python3.12") or "")
    for path in filter(None, candidates):
        try:
            ok = subprocess.run([path, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                                capture_output=True, timeout=30).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return path
    return None


def _pyre(src: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", src))


def _fill(dest: str, found: re.Match[str]) -> str:
    return re.sub(r"\$(\d+)", lambda m: found.group(int(m.group(1))) or "", dest)


def resolve(config: dict[str, Any], functions: set[str], method: str, target: str) -> tuple[str, str] | None:
    """(function name, request target it receives) for ``target`` through ``config["routes"]``
    (phases as Vercel applies them: main, filesystem, miss, rewrite), or None for no function."""
    path, _, query = target.partition("?")
    phases: dict[str | None, list[dict[str, Any]]] = {None: []}
    phase: str | None = None
    for route in config["routes"]:
        if "handle" in route:
            phase = route["handle"]
            phases[phase] = []
        else:
            phases[phase].append(route)
    extra: list[tuple[str, str]] = []

    def function_at(p: str) -> str | None:
        name = p.strip("/")
        return name if name in functions else None

    def phase_hit(name: str, p: str) -> tuple[str | None, str]:
        for route in phases.get(name, []):
            found = _pyre(route["src"]).match(p)
            if found and "dest" in route:
                dest = urlsplit(_fill(route["dest"], found))
                extra.extend(parse_qsl(dest.query, keep_blank_values=True))
                return function_at(dest.path), dest.path
        return None, p

    for route in phases[None]:
        if "status" in route and _pyre(route["src"]).match(path):
            return None  # a redirect
    current = path
    hit = function_at(current) or phase_hit("miss", current)[0]
    if hit is None:
        for rule in phases.get("filesystem", []):
            found = _pyre(rule["src"]).match(current)
            if found:
                dest = urlsplit(_fill(rule["dest"], found))
                extra.extend(parse_qsl(dest.query, keep_blank_values=True))
                current = dest.path
                hit = function_at(current) or phase_hit("miss", current)[0]
                break
    if hit is None:
        hit = phase_hit("rewrite", current)[0]
    if hit is None:
        return None
    have = {k for k, _v in parse_qsl(query, keep_blank_values=True)}
    added = urlencode([(k, v) for k, v in extra if k not in have])
    query = "&".join(q for q in (query, added) if q)
    return hit, path + ("?" + query if query else "")


def func_env(func: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update(json.loads((func / ".vc-config.json").read_text())["environment"])
    env["LAMBDA_TASK_ROOT"] = str(func)
    return env


class IpcFunction:
    """``python -c "import vc__handler__python"`` in ``func`` with ``VERCEL_IPC_PATH``; ``port``:
    the launcher's HTTP port once ``server-started`` arrived; ``messages``: every IPC message."""

    def __init__(self, python: str, func: Path, timeout: float = 60.0) -> None:
        self.folder = tempfile.mkdtemp(prefix="vcipc-")
        sock_path = os.path.join(self.folder, "ipc.sock")
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(sock_path)
        self.server.listen(1)
        self.messages: list[dict[str, Any]] = []
        self.started = threading.Event()
        env = func_env(func)
        env["VERCEL_IPC_PATH"] = sock_path
        self.proc = subprocess.Popen([python, "-c", "import vc__handler__python"], cwd=func, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        if not self.started.wait(timeout) or self.port is None:
            self.close()
            out = self.proc.stdout.read() if self.proc.stdout else ""
            raise RuntimeError(f"{func}: no server-started: {self.messages} {out}")

    @property
    def port(self) -> int | None:
        started = [m for m in self.messages if m.get("type") == "server-started"]
        return int(started[0]["payload"]["httpPort"]) if started else None

    def _read(self) -> None:
        self.server.settimeout(60)
        try:
            conn, _ = self.server.accept()
        except OSError:
            self.started.set()
            return
        buffer = b""
        while True:
            try:
                chunk = conn.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                self.started.set()
                return
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                self.messages.append(message)
                if message.get("type") in ("server-started", "unrecoverable-error"):
                    self.started.set()

    def request(self, method: str, target: str, body: bytes = b"", headers: dict[str, str] | None = None,
                ) -> httpx.Response:
        with httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30) as client:
            return client.request(method, target, content=body or None, headers=headers or {})

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.server.close()
        shutil.rmtree(self.folder, ignore_errors=True)


LAMBDA_DRIVER = r"""
import json, os, sys
sys.path.insert(0, os.getcwd())
import vc__handler__python as trampoline
events = json.loads(sys.stdin.read())
out = [trampoline.vc_handler(event, None) for event in events]
sys.stdout.write("\n@@RESULTS@@" + json.dumps(out))
"""


def invoke_lambda(python: str, func: Path, requests: list[tuple[str, str, bytes]],
                  timeout: float = 120.0) -> list[tuple[int, bytes]]:
    """Each ``(method, target, body)`` as one Lambda event to ``vc_handler`` of ``func`` (one
    process, one invocation at a time); returns ``(statusCode, body bytes)`` per request."""
    events = [{"body": json.dumps({"method": m, "path": t, "headers": {"host": "localhost"},
                                   "body": base64.b64encode(b).decode(), "encoding": "base64"})}
              for m, t, b in requests]
    started = time.monotonic()
    proc = subprocess.run([python, "-c", LAMBDA_DRIVER], cwd=func, env=func_env(func), input=json.dumps(events),
                          capture_output=True, text=True, timeout=timeout)
    assert "@@RESULTS@@" in proc.stdout, f"{func} ({time.monotonic() - started:.1f} s): {proc.stdout}\n{proc.stderr}"
    results = json.loads(proc.stdout.split("@@RESULTS@@", 1)[1])
    out = []
    for result in results:
        body = result.get("body") or ""
        data = base64.b64decode(body) if result.get("encoding") == "base64" else body.encode()
        out.append((int(result["statusCode"]), data))
    return out
