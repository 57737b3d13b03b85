"""Issue 9 items 1–3 over a real socket, under ``fnserve dev`` AND ``fnserve start`` (whose
instances are forked by the zygote): routing (SPEC §3.1, §3.4), modules that run an event loop,
threads or I/O at import (SPEC §4), ASGI messages with generator headers and bytes-like bodies
(SPEC §4). Functions run with the current interpreter (``--no-install``)."""

from __future__ import annotations

import json

import httpx
import pytest
from devserver import DevServer
from startserver import StartServer
from websockets.sync.client import connect

MODES = {"dev": DevServer, "start": StartServer}


def _serve(mode: str, case: str, tmp_path_factory):
    server = MODES[mode](case, tmp_path_factory.mktemp(f"{case}_{mode}"), "--no-install")
    server.start(timeout=60)
    return server


@pytest.fixture(scope="module", params=sorted(MODES))
def edgeone(request, tmp_path_factory):
    server = _serve(request.param, "fidelity_edgeone", tmp_path_factory)
    yield server
    server.stop()
    assert "Traceback" not in server.output(), server.output()[-4000:]


@pytest.fixture(scope="module", params=sorted(MODES))
def vercel(request, tmp_path_factory):
    server = _serve(request.param, "fidelity_vercel", tmp_path_factory)
    yield server
    server.stop()
    assert "Traceback" not in server.output(), server.output()[-4000:]


def _client(server: DevServer) -> httpx.Client:
    return httpx.Client(base_url=server.url, timeout=30, follow_redirects=False)


# --- 1. routing -------------------------------------------------------------------------------
def test_edgeone_optional_catchall_answers_its_bare_prefix(edgeone: DevServer) -> None:
    with _client(edgeone) as c:
        for path in ("/api", "/api/", "/api/x/y"):
            r = c.get(path)
            assert (r.status_code, r.text) == (200, f"default {path}"), path


def test_edgeone_static_route_takes_sub_paths_below_more_specific_routes(edgeone: DevServer) -> None:
    with _client(edgeone) as c:
        assert c.get("/demo/health?x=1").text == "demo /demo/health?x=1"  # a handler class, full path
        assert c.get("/demo").text == "demo /demo"
        assert c.get("/demo/deep/er").text == "deep /demo/deep/er"  # the more specific route wins
        assert c.get("/demox").status_code == 404  # only below a segment boundary


def test_edgeone_asgi_mount_sees_path_and_raw_path_below_the_prefix(edgeone: DevServer) -> None:
    with _client(edgeone) as c:
        r = c.get("/rawrouter/users/7")
        assert r.status_code == 200, r.text
        assert r.json() == {"route": "user 7", "path": "/users/7", "raw_path": "/users/7", "root_path": "/rawrouter"}
        assert r.json() == json.loads(r.content)
        assert c.get("/rawrouter").json()["route"] == "index"
        assert c.get("/rawrouter/a%20b").json() == {"route": "encoded", "path": "/a b", "raw_path": "/a%20b",
                                                    "root_path": "/rawrouter"}
        # the headers came as a generator: every one arrives, repeats kept apart
        assert r.headers.get_list("x-generated") == ["1", "2"]


def test_edgeone_sanic_catchall_app(edgeone: DevServer) -> None:
    with _client(edgeone) as c:
        assert c.get("/sanicapp").json() == {"route": "index", "path": "/"}
        assert c.get("/sanicapp/users/42").json() == {"route": "user", "uid": "42", "path": "/users/42"}
        r = c.get("/sanicapp/some/where/deep")
        assert r.json() == {"route": "catchall", "rest": "some/where/deep"}
        assert r.headers["content-type"] == "application/json"  # Sanic's generator of headers arrived


def test_edgeone_wsgi_mount_unchanged(edgeone: DevServer) -> None:
    with _client(edgeone) as c:
        assert c.get("/wsgiapp/a/b").json() == {"script_name": "/wsgiapp", "path_info": "/a/b"}
        assert c.get("/wsgiapp").json() == {"script_name": "/wsgiapp", "path_info": "/"}


def test_vercel_index_answers_index_paths(vercel: DevServer) -> None:
    with _client(vercel) as c:
        for path in ("/api", "/api/index", "/api/index.py"):
            r = c.get(path + "?q=1")
            assert (r.status_code, r.text) == (200, f"index {path}?q=1"), path
        assert c.get("/api/index/more").status_code == 404


# --- 2. loading -------------------------------------------------------------------------------
def test_module_running_an_event_loop_threads_and_io_at_import(vercel: DevServer) -> None:
    with _client(vercel) as c:
        r = c.get("/api/loopy")
        assert r.status_code == 200, r.text
        assert r.json() == {"startup": "ran", "import_loop_closed": True, "thread": "ran",
                            "seed": "seeded from the project root", "ticker_alive": True}
        assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]  # generator headers, repeats kept
        assert c.get("/api/loopy_wsgi").text == "wsgi loaded"


# --- 3. ASGI messages ---------------------------------------------------------------------------
def test_websocket_accept_headers_generator_and_bytes_like_frames(vercel: DevServer) -> None:
    url = vercel.url.replace("http://", "ws://") + "/api/loopy"
    with connect(url, open_timeout=30) as ws:
        assert ws.response.headers.get_all("x-ws") == ["a", "b"]
        assert ws.recv(timeout=10) == b"\x00bytes"
        assert ws.recv(timeout=10) == b"view"
