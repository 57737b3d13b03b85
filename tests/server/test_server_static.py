"""Static files (SPEC §6) through the front app, in process: uvicorn on port 0 + httpx."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from devserver import raw_get, serve_app

from fnserve.server.app import FrontApp, Site
from fnserve.server.static import StaticFiles, parse_range


async def no_dispatch(function, scope, receive, send):  # pragma: no cover - never reached
    raise AssertionError("no function expected")


@pytest.fixture()
def public(tmp_path: Path) -> Path:
    pub = tmp_path / "public"
    (pub / "docs").mkdir(parents=True)
    (pub / "hello.txt").write_text("hello world\n")
    (pub / "index.html").write_text("<h1>home</h1>")
    (pub / "about.html").write_text("<h1>about</h1>")
    (pub / "docs" / "index.html").write_text("<h1>docs</h1>")
    (pub / "app.js").write_text("console.log(1)")
    (pub / "data.bin").write_bytes(bytes(range(256)) * 1024)
    (pub / ".env").write_text("SECRET=1")
    (pub / "x.py").write_text("print(1)")
    (pub / "empty").mkdir()
    (tmp_path / "secret.txt").write_text("outside")
    os.symlink(tmp_path / "secret.txt", pub / "link.txt")
    return pub


@pytest.fixture()
def base(public: Path):
    app = FrontApp(Site(routes=None, static=StaticFiles(public)), no_dispatch)
    with serve_app(app) as url:
        yield url


@pytest.fixture()
def clean_base(public: Path):
    app = FrontApp(Site(routes=None, static=StaticFiles(public, clean_urls=True)), no_dispatch)
    with serve_app(app) as url:
        yield url


def test_file_types_and_validators(base: str) -> None:
    r = httpx.get(base + "/hello.txt")
    assert r.status_code == 200 and r.text == "hello world\n"
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["etag"] and r.headers["last-modified"]
    assert httpx.get(base + "/app.js").headers["content-type"].startswith("text/javascript")
    assert httpx.get(base + "/data.bin").headers["content-type"] == "application/octet-stream"
    assert httpx.get(base + "/").text == "<h1>home</h1>"
    assert httpx.get(base + "/docs/").text == "<h1>docs</h1>"


def test_conditional_requests(base: str) -> None:
    r = httpx.get(base + "/hello.txt")
    etag, lm = r.headers["etag"], r.headers["last-modified"]
    r2 = httpx.get(base + "/hello.txt", headers={"If-None-Match": etag})
    assert r2.status_code == 304 and r2.content == b"" and r2.headers["etag"] == etag
    assert httpx.get(base + "/hello.txt", headers={"If-None-Match": '"nope"'}).status_code == 200
    assert httpx.get(base + "/hello.txt", headers={"If-Modified-Since": lm}).status_code == 304
    old = "Mon, 01 Jan 2001 00:00:00 GMT"
    assert httpx.get(base + "/hello.txt", headers={"If-Modified-Since": old}).status_code == 200


def test_range_and_head(base: str) -> None:
    whole = httpx.get(base + "/data.bin").content
    assert len(whole) == 256 * 1024
    r = httpx.get(base + "/data.bin", headers={"Range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == whole[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(whole)}"
    r = httpx.get(base + "/data.bin", headers={"Range": "bytes=-5"})
    assert r.status_code == 206 and r.content == whole[-5:]
    r = httpx.get(base + "/data.bin", headers={"Range": f"bytes={len(whole)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(whole)}"
    r = httpx.get(base + "/data.bin", headers={"Range": "bytes=0-1", "If-Range": '"stale"'})
    assert r.status_code == 200
    h = httpx.head(base + "/data.bin")
    assert h.status_code == 200 and h.content == b"" and h.headers["content-length"] == str(len(whole))


@pytest.mark.parametrize(
    "target",
    ["/../secret.txt", "/%2e%2e/secret.txt", "/docs/%2E%2E/%2e%2e/secret.txt", "/.env", "/x.py",
     "/link.txt", "/empty", "/empty/", "/docs/..%2f..%2fsecret.txt", "/%2eenv"],
)
def test_refused(base: str, target: str) -> None:
    status, data = raw_get(base, target)
    assert status == 404, data
    assert b"outside" not in data and b"SECRET" not in data and b"print(1)" not in data


def test_post_not_static(base: str) -> None:
    assert httpx.post(base + "/hello.txt").status_code == 404


def test_clean_urls(clean_base: str) -> None:
    assert httpx.get(clean_base + "/about").text == "<h1>about</h1>"
    r = httpx.get(clean_base + "/about.html?x=1")
    assert r.status_code == 308 and r.headers["location"] == "/about?x=1"
    r = httpx.get(clean_base + "/docs/index.html")
    assert r.status_code == 308 and r.headers["location"] == "/docs"


def test_parse_range() -> None:
    assert parse_range("bytes=0-0", 10) == (0, 0)
    assert parse_range("bytes=5-", 10) == (5, 9)
    assert parse_range("bytes=-20", 10) == (0, 9)
    assert parse_range("bytes=3-100", 10) == (3, 9)
    assert parse_range("bytes=10-", 10) == "unsatisfiable"
    assert parse_range("bytes=0-1,3-4", 10) is None
    assert parse_range("items=0-1", 10) is None
    assert parse_range("bytes=5-2", 10) is None
