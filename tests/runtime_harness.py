"""Test support for the runtime adapters (``import runtime_harness as H`` in tests/runtime/test_runtime_*.py).

- ``project(name, tmp_path)``: copy ``tests/projects/<name>`` into ``tmp_path`` with a generated
  PNG at ``static/logo.png``; returns the copy's root.
- ``spec(root, rel, ...)``: a function spec dict as the supervisor builds it.
- ``isolated()``: context manager restoring ``sys.path`` and ``sys.modules`` (the loader mutates
  both, which is right in a worker process and wrong across tests in one pytest process).
- ``http_scope(...)`` / ``call(app, scope, body_chunks)``: in-memory ASGI calls.
- ``load``: a pytest fixture, ``load(project, rel, **spec_fields)`` → a loaded function.
- ``LiveServer(app, fn)``: uvicorn on 127.0.0.1 port 0 in a background thread (with the
  function's startup/shutdown on the server's loop).
"""

import asyncio
import contextlib
import shutil
import socket
import struct
import sys
import threading
import time
import zlib
from pathlib import Path
from urllib.parse import quote

import pytest

PROJECTS = Path(__file__).resolve().parent / "projects"


def png_bytes(width=8, height=8):
    """A valid PNG image (RGB gradient), generated: bytes."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + b"".join(bytes(((x * 31) % 256, (y * 29) % 256, 0xFF ^ x)) for x in range(width))
                   for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def project(name, tmp_path):
    root = Path(tmp_path) / name
    shutil.copytree(PROJECTS / name, root)
    (root / "static").mkdir(exist_ok=True)
    (root / "static" / "logo.png").write_bytes(png_bytes(64, 64))
    return root


def spec(root, rel, *, layout="vercel", attr=None, kind="app", module=None, **extra):
    root = Path(root)
    if layout == "edgeone":
        base = root / "cloud-functions"
        roots = [str(root), str(base)]
    else:
        base = root
        roots = [str(root)]
    path = root / rel
    if module is None:
        module = ".".join(path.relative_to(base).with_suffix("").parts)
    out = {"id": rel, "path": str(path), "module": module, "attr": attr or "app", "kind": kind,
           "layout": layout, "import_roots": roots, "project_root": str(root),
           "body_limit": 4_500_000, "concurrency": 8}
    out.update(extra)
    return out


@contextlib.contextmanager
def isolated(root=None):
    """Restore ``sys.path``; forget the modules imported from ``root`` (the copied project) so the
    next test imports its own copy. Library modules imported meanwhile stay (re-importing C
    extensions such as httptools breaks them)."""
    saved_path = list(sys.path)
    saved_modules = set(sys.modules)
    try:
        yield
    finally:
        sys.path[:] = saved_path
        prefix = str(root) if root is not None else None
        for name in set(sys.modules) - saved_modules:
            module = sys.modules.get(name)
            where = [getattr(module, "__file__", None) or ""] + list(getattr(module, "__path__", None) or [])
            if name.startswith("_fnserve_user") or prefix is None or any(str(w).startswith(prefix) for w in where):
                del sys.modules[name]


def http_scope(method="GET", path="/", query=b"", headers=(), root_path="", raw_path=None, params=None):
    hdrs = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    if not any(k == b"host" for k, _ in hdrs):
        hdrs.insert(0, (b"host", b"testserver"))
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": method, "scheme": "http", "path": path,
        "raw_path": raw_path if raw_path is not None else quote(path).encode("ascii"),
        "root_path": root_path, "query_string": query, "headers": hdrs,
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        "fnserve.route_params": dict(params or {}),
    }


async def acall(app, scope, body_chunks=(b"",)):
    """Drive ``app`` with ``scope``; returns ``(status, headers, body, messages)``."""
    chunks = list(body_chunks)
    done = asyncio.Event()
    messages = []

    async def receive():
        if chunks:
            body = chunks.pop(0)
            return {"type": "http.request", "body": body, "more_body": bool(chunks)}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message):
        messages.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            done.set()

    await app(scope, receive, send)
    start = messages[0]
    body = b"".join(m.get("body", b"") for m in messages[1:])
    return start["status"], list(start.get("headers", [])), body, messages


def call(app, scope, body_chunks=(b"",)):
    return asyncio.run(acall(app, scope, body_chunks))


class Front:
    """A stand-in for the front server: sets ``root_path`` (an EdgeOne mount prefix) and route
    params on each scope, as the real front does, then calls ``app``."""

    def __init__(self, app, root_path="", params=None):
        self.app, self.root_path, self.params = app, root_path, params or {}

    async def __call__(self, scope, receive, send):
        if scope["type"] in ("http", "websocket"):
            scope = dict(scope, root_path=self.root_path)
            scope["fnserve.route_params"] = dict(self.params)
        await self.app(scope, receive, send)


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1 (port 0) in a thread; ``fn``: a LoadedFunction whose
    startup/shutdown run on the server's loop. ``url``: ``http://127.0.0.1:<port>``."""

    def __init__(self, app, fn=None):
        import uvicorn

        self.fn = fn
        self.config = uvicorn.Config(app, lifespan="off", log_level="warning", server_header=False,
                                     date_header=False, http="httptools", ws="websockets-sansio")
        self.server = uvicorn.Server(self.config)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        async def main():
            if self.fn is not None:
                await self.fn.startup()
            try:
                await self.server.serve(sockets=[self.sock])
            finally:
                if self.fn is not None:
                    await self.fn.shutdown(5.0)

        try:
            asyncio.run(main())
        except BaseException as exc:  # reported by __exit__
            self.error = exc

    def __enter__(self):
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            raise RuntimeError("uvicorn did not start: %r" % (self.error,))
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()
        if self.error is not None:
            raise self.error


@pytest.fixture
def load(tmp_path, monkeypatch):
    """``load(project, rel, **spec_fields) -> LoadedFunction``: copies ``tests/projects/<project>``
    into ``tmp_path`` (once), makes it the CWD and loads ``rel`` with the real loader, forgetting
    the project's modules afterwards (``isolated``)."""
    from fnserve.runtime.loader import load_function

    with contextlib.ExitStack() as stack:
        def _load(name, rel, **kw):
            root = tmp_path / name
            if not root.exists():
                project(name, tmp_path)
            monkeypatch.chdir(root)
            stack.enter_context(isolated(root))
            return load_function(spec(root, rel, **kw))

        yield _load
