"""Python version requests and interpreter selection (SPEC §7, issue 5 item 3).

Uses the interpreters actually installed (pyenv 3.9–3.13 on the reference machine); tests needing
a version that is missing are skipped with the reason.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

from fnserve.deps import pythons
from fnserve.deps.manifests import PythonRequest, read_manifests
from fnserve.deps.pythons import current_interpreter, discover, probe, select_python
from fnserve.errors import DependencyError

ENV = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "PYENV_ROOT", "UV_PYTHON_INSTALL_DIR")}
CURRENT = current_interpreter()


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("pycache") / "pythons.json"


@pytest.fixture(scope="module")
def installed(cache):
    return {i.version: i for i in discover(ENV, cache)}


def _minor(installed, minor: str):
    found = [i for v, i in installed.items() if v.startswith(minor + ".") and i.supported]
    if not found:
        pytest.skip(f"no Python {minor} installed on this machine (found: {', '.join(sorted(installed))})")
    return max(found, key=lambda i: i.parsed)


def _req(spec: str, source: str, pin: bool = True) -> PythonRequest:
    return PythonRequest(SpecifierSet(spec), spec, source, pin)


def test_nothing_requested_uses_fnserves_python(cache):
    choice = select_python([], ENV, cache)
    assert choice.interpreter.version == "%d.%d.%d" % sys.version_info[:3]
    assert "nothing requested" in choice.reason


def test_python_version_file_picks_that_minor(cache, installed, tmp_path):
    want = _minor(installed, "3.12")
    (tmp_path / ".python-version").write_text("# pinned\n3.12\n")
    requests = read_manifests(tmp_path).python
    choice = select_python(requests, ENV, cache)
    assert choice.interpreter.version == want.version
    assert ".python-version:2" in choice.reason


def test_requires_python_range_picks_nearest_match(cache, installed):
    if CURRENT.parsed.release[:2] >= (3, 13):
        pytest.skip("fnserve's own Python already satisfies >=3.13")
    want = _minor(installed, "3.13")
    choice = select_python([_req(">=3.13", "pyproject.toml:4", pin=False)], ENV, cache)
    assert choice.interpreter.version == want.version and "nearest installed match" in choice.reason


def test_range_prefers_the_lowest_matching_minor(cache, installed):
    if CURRENT.parsed.release[:2] >= (3, 12):
        pytest.skip("fnserve's own Python already satisfies >=3.12")
    want = _minor(installed, "3.12")
    _minor(installed, "3.13")
    choice = select_python([_req(">=3.12", "pyproject.toml:4", pin=False)], ENV, cache)
    assert choice.interpreter.version == want.version


def test_pipfile_python_version(cache, installed):
    want = _minor(installed, "3.10")
    requests = read_manifests(Path(__file__).parents[1] / "projects" / "deps_pipfile").python
    assert requests[0].specifier == SpecifierSet("==3.12.*")
    choice = select_python([_req("==3.10.*", "Pipfile:16")], ENV, cache)
    assert choice.interpreter.version == want.version


def test_stdlib_names_come_from_the_target_python(installed):
    py39 = _minor(installed, "3.9")  # 3.9 has no sys.stdlib_module_names: computed from its stdlib
    assert {"os", "json", "asyncio", "sys"} <= py39.stdlib and "tomllib" not in py39.stdlib
    py313 = _minor(installed, "3.13")
    assert "tomllib" in py313.stdlib and "asynchat" not in py313.stdlib


def test_no_match_lists_installed_versions(cache, installed):
    with pytest.raises(DependencyError) as info:
        select_python([_req("==3.99.*", ".python-version:1")], ENV, cache, uv_find=lambda spec: None)
    text = str(info.value)
    assert "3.99" in text and ".python-version:1" in text
    assert CURRENT.version in text  # lists what is installed


def test_conflicting_requests_are_an_error(cache):
    with pytest.raises(DependencyError, match="no installed Python satisfies"):
        select_python([_req("==3.12.*", ".python-version:1"), _req(">=3.13", "pyproject.toml:4", False)],
                      ENV, cache, uv_find=lambda spec: None)


def test_below_39_is_never_chosen(cache, installed):
    with pytest.raises(DependencyError, match="below 3.9"):
        select_python([_req("==3.8.*", ".python-version:1")], ENV, cache, uv_find=lambda spec: None)


def test_uv_find_is_the_last_resort(cache, tmp_path):
    asked = []

    def fake_find(spec):
        asked.append(str(spec))
        return Path(sys.executable)

    spec = f"=={sys.version_info[0]}.{sys.version_info[1]}.*"
    choice = select_python([_req(spec, "x")], {"PATH": ""}, cache, uv_find=fake_find)
    assert not asked  # fnserve's own Python matched first
    assert choice.interpreter.version == CURRENT.version


def test_probe_results_are_cached(cache, installed, monkeypatch):
    target = next((i for i in installed.values() if i.path != CURRENT.path), None)
    if target is None:
        pytest.skip("only fnserve's own Python is installed")
    assert probe(target.path, cache) is not None

    def boom(*args, **kwargs):
        raise AssertionError("probe ran a process although the result was cached")

    monkeypatch.setattr(subprocess, "run", boom)
    assert probe(target.path, cache).version == target.version


def test_explicit_python_setting_overrides(cache, installed):
    want = _minor(installed, "3.12")
    choice = select_python([_req("==3.10.*", ".python-version:1")], ENV, cache, override="3.12")
    assert choice.interpreter.version == want.version
    by_path = select_python([], ENV, cache, override=str(want.path))
    assert by_path.interpreter.version == want.version and "python setting" in by_path.reason


def test_pyenv_shims_are_skipped(tmp_path):
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "python3").write_text("#!/bin/sh\nexit 127\n")
    (shims / "python3").chmod(0o755)
    assert pythons.candidate_paths({"PATH": str(shims), "HOME": str(tmp_path)}) == []


def test_python_setting_as_specifier(cache, installed):
    want = _minor(installed, "3.12")
    choice = select_python([], ENV, cache, override="python3.12")
    assert choice.interpreter.version == want.version
    ranged = select_python([], ENV, cache, override=">=3.9")
    assert ranged.interpreter.version == CURRENT.version  # fnserve's own Python satisfies the range


def test_missing_pin_fetch_then_fallback_to_nearest_with_a_warning(cache, installed):
    asked = []

    def no_fetch(spec):
        asked.append(str(spec))
        return None

    req = [_req("==3.99.*", ".python-version:1")]
    with pytest.raises(DependencyError) as info:
        select_python(req, ENV, cache, uv_find=lambda spec: None, uv_fetch=no_fetch)
    assert asked == ["==3.99.*"]
    assert "uv could not fetch one" in info.value.message and "--python-fallback" in (info.value.hint or "")
    choice = select_python(req, ENV, cache, uv_find=lambda spec: None, uv_fetch=no_fetch, fallback=True)
    newest = max((i for i in installed.values() if i.supported), key=lambda i: i.parsed)
    assert choice.interpreter.parsed.release[:2] == newest.parsed.release[:2]
    assert choice.warning is not None and info.value.message in choice.warning
    assert str(choice.interpreter.path) in choice.warning and ".python-version:1" in choice.warning


def test_nearest_interpreter_by_minor_distance(installed):
    supported = [i for i in installed.values() if i.supported]
    low = pythons.nearest_interpreter(SpecifierSet("==3.8.*"), supported)
    assert low is not None and low.parsed.release[:2] == min(i.parsed.release[:2] for i in supported)
    assert pythons.nearest_interpreter(SpecifierSet("==3.14.*"), []) is None


def test_uv_fetch_failure_is_remembered(tmp_path):
    calls = tmp_path / "calls"
    fake = tmp_path / "uv"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\nexit 1\n")
    fake.chmod(0o755)
    fetch = pythons.UvFetch(str(fake), {}, tmp_path / "pythons.json")
    assert fetch(SpecifierSet("==3.99.*")) is None
    assert fetch(SpecifierSet("==3.99.*")) is None  # not asked again within FETCH_RETRY
    assert calls.read_text().splitlines() == ["python install ==3.99.*"]
