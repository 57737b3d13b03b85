"""A package index on loopback for install tests that need no network (issue 13 item 3).

``make_wheel(folder, name, version)`` writes a tiny pure-Python wheel (module ``name`` with
``VALUE = "<name> <version>"``) by hand: no build backend. ``LocalIndex`` serves such wheels as
a PEP 503 "simple" index on 127.0.0.1 (port 0) in a thread; ``hold()`` makes the index pages wait
until ``release()``, so a test sees an install that is under way for as long as it needs.
Requirements files point at it with ``--index-url <index.url>`` (uv then asks no other index).
"""

from __future__ import annotations

import base64
import hashlib
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def make_wheel(folder: Path, name: str, version: str = "1.0") -> Path:
    """Write ``<name>-<version>-py3-none-any.whl`` into ``folder``; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    module = name.replace("-", "_")
    info = f"{module}-{version}.dist-info"
    files = {
        f"{module}/__init__.py": f'VALUE = "{name} {version}"\n',
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: fnserve-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join(record + [f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{module}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
    return wheel


class LocalIndex:
    """A simple index over the wheels of ``folder``; ``requests``: the paths asked for."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.requests: list[str] = []
        self._open = threading.Event()
        self._open.set()
        index = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                index.requests.append(self.path)
                if self.path.startswith("/simple/"):
                    index._open.wait(60)
                    name = self.path.split("/")[2].replace("_", "-").lower()
                    links = [f'<a href="/files/{w.name}#sha256={hashlib.sha256(w.read_bytes()).hexdigest()}">'
                             f"{w.name}</a>" for w in sorted(index.folder.glob("*.whl"))
                             if w.name.split("-")[0].replace("_", "-").lower() == name]
                    if not links:
                        self._send(404, b"not found", "text/plain")
                        return
                    self._send(200, ("<html><body>" + "".join(links) + "</body></html>").encode(), "text/html")
                elif self.path.startswith("/files/"):
                    self._send(200, (index.folder / self.path.split("/")[2]).read_bytes(), "application/octet-stream")
                else:
                    self._send(404, b"not found", "text/plain")

            def do_HEAD(self) -> None:
                self.head_only = True
                self.do_GET()

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                if not getattr(self, "head_only", False):
                    self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> LocalIndex:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._open.set()
        self.server.shutdown()
        self.server.server_close()

    def hold(self) -> None:
        """Index pages wait (at most 60 s) until ``release()``."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()
