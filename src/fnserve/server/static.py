"""Static files from ``public/`` (SPEC §6, Vercel's ``public`` folder).

``StaticFiles.lookup(path)`` maps a decoded request path to a file (or a redirect for
``cleanUrls``) without touching the response; ``StaticFiles.respond(...)`` streams it with
``Content-Type``, ``ETag``/``Last-Modified`` (``304`` on ``If-None-Match``/``If-Modified-Since``),
a single ``Range`` (``206``/``416``, ``If-Range`` honoured) and ``HEAD``.

Refused (treated as "no such file", so the request falls through to routing and usually 404s):
directories without ``index.html`` (no listing), any segment that is ``.``/``..`` or starts with
``.`` (dotfiles: ``.env``, ``.git``), ``.py``/``.pyc`` sources, backslashes and NUL bytes, and
anything whose real path (symlinks resolved) is outside ``public/``. The ASGI server already
decodes ``%2e%2e`` to ``..`` in ``scope["path"]``, so encoded traversal is refused the same way.

``also``: more folders served at ``/`` after this one, by the same rules (``fnserve start``: a
Django project's ``collectstatic`` output, laid out by URL path; ``server.collectstatic``).

Negative cache (issue 14): most requests are for functions, not files, and each used to cost a
``stat()`` of ``public/`` to learn so. A path found absent is remembered for ``absent_ttl`` s
(default ``ABSENT_TTL``, 1 s; at most ``ABSENT_MAX`` paths, then the memory is emptied): a file
added to ``public/`` while serving is served within that time, with no watcher (the dev reloader
does not watch ``public/``); a reload builds a new ``StaticFiles`` and so starts afresh. Found
files are checked on every request, as before (a deleted file is never served from memory).
"""

from __future__ import annotations

import mimetypes
import os
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

from fnserve.runtime.asgitypes import Scope, Send

CHUNK = 64 * 1024  # bytes per http.response.body message
ABSENT_TTL = 1.0  # seconds a path found absent is answered "no file" without a stat() (module docstring)
ABSENT_MAX = 10_000  # paths remembered as absent at most (a scan of random paths cannot grow it further)
_REFUSED_SUFFIXES = (".py", ".pyc", ".pyo")
_TYPES = {
    ".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css",
    ".json": "application/json", ".map": "application/json", ".wasm": "application/wasm",
    ".svg": "image/svg+xml", ".webp": "image/webp", ".avif": "image/avif", ".ico": "image/x-icon",
    ".woff": "font/woff", ".woff2": "font/woff2", ".txt": "text/plain", ".md": "text/markdown",
    ".html": "text/html", ".htm": "text/html", ".xml": "application/xml",
    ".webmanifest": "application/manifest+json",
}


def content_type(path: Path) -> str:
    """The ``Content-Type`` for a file name; text types get ``; charset=utf-8``."""
    ctype = _TYPES.get(path.suffix.lower()) or mimetypes.guess_type(path.name)[0]
    if ctype is None:
        return "application/octet-stream"
    if ctype.startswith("text/") or ctype in ("application/json", "application/xml", "image/svg+xml"):
        return ctype + "; charset=utf-8"
    return ctype


@dataclass(frozen=True)
class Hit:
    """A lookup result: either ``file`` (absolute, resolved) or ``redirect`` (a path to 308 to)."""

    file: Path | None = None
    redirect: str | None = None


class StaticFiles:
    """Serves the files under one folder. ``directory`` need not exist (then nothing matches).

    ``clean_urls``: serve ``x.html`` at ``/x`` and redirect ``/x.html`` → ``/x`` and
    ``/d/index.html`` → ``/d`` (vercel.json ``cleanUrls``). ``also``: folders looked up after this
    one when it has no file for a path (see the module docstring); ``absent_ttl``: seconds a path
    found absent is remembered (0: never remembered).
    """

    def __init__(self, directory: Path, *, clean_urls: bool = False, also: Sequence[StaticFiles] = (),
                 absent_ttl: float = ABSENT_TTL) -> None:
        self.directory = directory
        self.clean_urls = clean_urls
        self.also = tuple(also)
        self.absent_ttl = absent_ttl
        self._absent: dict[str, float] = {}  # path → time.monotonic() until which it is known absent
        self._root: Path | None
        try:
            self._root = directory.resolve(strict=True)
        except OSError:
            self._root = None
        self._prefix = f"{self._root}/" if self._root is not None else ""

    def lookup(self, path: str) -> Hit | None:
        """Map a decoded request path (``scope["path"]``) to a ``Hit``, or None if not served
        (by this folder, then by each of ``also``)."""
        absent = self._absent
        until = absent.get(path)
        if until is not None:
            if until > time.monotonic():
                return None
            del absent[path]
        hit = self._lookup(path)
        for other in self.also:
            if hit is not None:
                break
            hit = other.lookup(path)
        if hit is None and self.absent_ttl > 0:
            if len(absent) >= ABSENT_MAX:
                absent.clear()
            absent[path] = time.monotonic() + self.absent_ttl
        return hit

    def _lookup(self, path: str) -> Hit | None:
        if self._root is None or "\\" in path or "\x00" in path:
            return None
        parts = [p for p in path.split("/") if p]
        if any(p.startswith(".") for p in parts):  # ".", "..", dotfiles
            return None
        if parts and parts[-1].lower().endswith(_REFUSED_SUFFIXES):
            return None
        if self.clean_urls and parts:
            last = parts[-1]
            if last == "index.html" or last.endswith(".html"):
                if self._file(parts) is not None:
                    stem = parts[:-1] if last == "index.html" else parts[:-1] + [last[:-5]]
                    return Hit(redirect="/" + "/".join(stem))
                return None
        found = self._file(parts)
        if found is not None:
            return Hit(file=found)
        if self.clean_urls and parts:
            found = self._file(parts[:-1] + [parts[-1] + ".html"])
            if found is not None:
                return Hit(file=found)
        return None

    def _file(self, parts: list[str]) -> Path | None:
        assert self._root is not None
        try:  # fast path: one stat() answers "no such file" for most requests
            os.stat(self._prefix + "/".join(parts))
        except (OSError, ValueError):
            return None
        candidate = self._root.joinpath(*parts)
        try:
            real = candidate.resolve(strict=True)
            st = real.stat()
        except (OSError, RuntimeError):
            return None
        if real != self._root and self._root not in real.parents:
            return None  # a symlink pointing out of public/
        if stat.S_ISDIR(st.st_mode):
            return self._file(parts + ["index.html"]) if not parts or parts[-1] != "index.html" else None
        if not stat.S_ISREG(st.st_mode) or real.name.startswith("."):
            return None
        return real

    async def respond(
        self,
        scope: Scope,
        send: Send,
        file: Path,
        extra_headers: Iterable[tuple[bytes, bytes]] = (),
    ) -> int:
        """Stream ``file`` as the response to a GET or HEAD ``scope``. Returns the status sent
        (200, 206, 304 or 416). The file is read in ``CHUNK``-byte pieces while sending."""
        try:
            fd = os.open(file, os.O_RDONLY)
        except OSError:
            await _plain(send, 404, b"Not Found", extra_headers)
            return 404
        with os.fdopen(fd, "rb") as fh:
            st = os.fstat(fh.fileno())
            size = st.st_size
            etag = f'"{st.st_mtime_ns:x}-{size:x}"'
            last_modified = formatdate(st.st_mtime, usegmt=True)
            req = _headers(scope)
            headers = [
                (b"etag", etag.encode()),
                (b"last-modified", last_modified.encode()),
                (b"cache-control", b"public, max-age=0, must-revalidate"),
                (b"accept-ranges", b"bytes"),
                *extra_headers,
            ]
            if _not_modified(req, etag, st.st_mtime):
                await send({"type": "http.response.start", "status": 304, "headers": headers})
                await send({"type": "http.response.body", "body": b""})
                return 304
            headers.append((b"content-type", content_type(file).encode()))
            status, start, length = 200, 0, size
            rng = req.get("range")
            if rng is not None and _if_range_ok(req.get("if-range"), etag, last_modified):
                parsed = parse_range(rng, size)
                if parsed == "unsatisfiable":
                    headers.append((b"content-range", f"bytes */{size}".encode()))
                    await _plain(send, 416, b"Range Not Satisfiable", headers)
                    return 416
                if isinstance(parsed, tuple):
                    start, end = parsed
                    status, length = 206, end - start + 1
                    headers.append((b"content-range", f"bytes {start}-{end}/{size}".encode()))
            headers.append((b"content-length", str(length).encode()))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            if scope.get("method") == "HEAD" or length == 0:
                await send({"type": "http.response.body", "body": b""})
                return status
            fh.seek(start)
            remaining = length
            while remaining > 0:
                chunk = fh.read(min(CHUNK, remaining))
                if not chunk:
                    break  # the file shrank while we were sending; end the body early
                remaining -= len(chunk)
                await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
            if remaining > 0:
                await send({"type": "http.response.body", "body": b""})
            return status


def parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """Parse one ``Range: bytes=...`` value against a file of ``size`` bytes (RFC 9110 §14.2).

    Returns ``(first, last)`` inclusive, ``"unsatisfiable"`` (→ 416), or None when the header is
    malformed or asks for several ranges (then the whole file is sent with 200, as RFC allows).
    """
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_s, dash, last_s = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first_s == "":
            suffix = int(last_s)
            if suffix <= 0:
                return "unsatisfiable"
            return (max(0, size - suffix), size - 1) if size else "unsatisfiable"
        first = int(first_s)
        last = int(last_s) if last_s else size - 1
    except ValueError:
        return None
    if first < 0:
        return None
    if first >= size:
        return "unsatisfiable"
    if last < first:
        return None
    return first, min(last, size - 1)


def _headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())}


def _not_modified(req: dict[str, str], etag: str, mtime: float) -> bool:
    inm = req.get("if-none-match")
    if inm is not None:
        tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
        return "*" in tags or etag in tags
    ims = req.get("if-modified-since")
    if ims is not None:
        try:
            return int(mtime) <= parsedate_to_datetime(ims).timestamp()
        except (TypeError, ValueError, OverflowError, OSError, IndexError):
            return False  # an unreadable or absurd date counts as absent (RFC 9110 §13.1.3)
    return False


def _if_range_ok(value: str | None, etag: str, last_modified: str) -> bool:
    return value is None or value.strip() in (etag, last_modified)


async def _plain(send: Send, status: int, body: bytes, headers: Iterable[tuple[bytes, bytes]]) -> None:
    hdrs = [h for h in headers if h[0] not in (b"content-length", b"content-type")]
    hdrs += [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": body})
