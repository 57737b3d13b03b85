"""Workers never write ``__pycache__`` into the user's source tree (issue 10 item 14): bytecode
goes under ``<project>/.fnserve/pycache`` (``-X pycache_prefix``), in dev and in start (where the
snapshot's bytecode is removed with the snapshot). Real servers on loopback."""

from __future__ import annotations

from pathlib import Path

import httpx
from devserver import DevServer
from startserver import StartServer


def _pycache_dirs(root: Path) -> list[Path]:
    return [p for p in root.rglob("__pycache__") if ".fnserve" not in p.relative_to(root).parts]


def test_dev_workers_write_no_bytecode_beside_the_sources(tmp_path: Path) -> None:
    srv = DevServer("start_basic", tmp_path)
    srv.start()
    try:
        assert httpx.get(srv.url + "/api/version", timeout=30).status_code == 200
        assert httpx.get(srv.url + "/api/asgi", timeout=30).status_code == 200
    finally:
        srv.stop()
    assert _pycache_dirs(srv.project) == []
    assert list((srv.project / ".fnserve" / "pycache").rglob("version*.pyc"))


def test_start_workers_write_no_bytecode_beside_the_sources(tmp_path: Path) -> None:
    srv = StartServer("start_basic", tmp_path)
    srv.start()
    try:
        assert httpx.get(srv.url + "/api/version", timeout=30).status_code == 200
        assert list((srv.project / ".fnserve" / "pycache").rglob("version*.pyc"))
    finally:
        srv.stop()
    assert _pycache_dirs(srv.project) == []
    assert not list((srv.project / ".fnserve" / "pycache").rglob("version*.pyc"))  # removed with its snapshot


def test_bytecode_dirs_finds_the_prefix_mirror(tmp_path: Path) -> None:
    from fnserve.supervisor.target import PYCACHE, bytecode_dirs

    source = tmp_path / "api" / "hello.py"
    source.parent.mkdir()
    source.write_text("")
    assert bytecode_dirs(source) == [source.parent.resolve() / "__pycache__"]
    (tmp_path / PYCACHE).mkdir(parents=True)
    mirror = tmp_path.resolve() / PYCACHE / str(source.parent.resolve()).lstrip("/")
    assert bytecode_dirs(source) == [source.parent.resolve() / "__pycache__", mirror]
