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


def test_installed_modules_keep_their_own_bytecode_project_modules_go_to_the_prefix(tmp_path: Path) -> None:
    """With ``-X pycache_prefix`` (as workers start), the runtime narrows the prefix to sources
    outside the interpreter's installation: the standard library and site-packages keep using
    their own ``__pycache__`` (no recompilation per project), the project's files go under
    the prefix. Checked in a fresh ``python -I`` as a worker runs."""
    import json
    import subprocess
    import sys

    runtime = Path(__file__).parents[2] / "src" / "fnserve" / "runtime"
    prefix = tmp_path / "pycache"
    project_file = tmp_path / "proj" / "api" / "hello.py"
    script = (
        "import importlib.util as u, json, os, sys\n"
        "s = u.spec_from_file_location('rt', sys.argv[1] + '/bytecode.py'); m = u.module_from_spec(s)\n"
        "s.loader.exec_module(m); m.keep_installed_bytecode_in_place(); m.keep_installed_bytecode_in_place()\n"
        "import importlib._bootstrap_external as e\n"
        "std = os.__file__\n"
        "print(json.dumps([e.cache_from_source(std), e.cache_from_source(sys.argv[2]), u.cache_from_source(std)]))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-X", f"pycache_prefix={prefix}", "-c", script, str(runtime),
                          str(project_file)], capture_output=True, text=True, timeout=60, check=True)
    std_cached, project_cached, via_util = json.loads(out.stdout)
    std_dir = Path(json.loads(subprocess.run([sys.executable, "-I", "-c", "import os, json; print(json.dumps(os.__file__))"],
                                             capture_output=True, text=True, check=True).stdout))
    assert Path(std_cached).parent == std_dir.parent / "__pycache__"  # the stdlib's own bytecode
    assert Path(project_cached).is_relative_to(prefix)  # the project's under .fnserve/pycache
    assert str(project_file.parent).lstrip("/") in project_cached
    assert via_util == std_cached  # importlib.util sees the same function
