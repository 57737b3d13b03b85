"""Declared sources, merge rules and conflicts (SPEC §7, issue 5 item 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from fnserve.deps.detect import DetectedImport
from fnserve.deps.manifests import read_manifests
from fnserve.deps.mapping import ImportMap
from fnserve.deps.merge import merge, satisfiable
from fnserve.deps.requirements_txt import SourcedRequirement, parse_requirements_file
from fnserve.errors import DependencyError

PROJECTS = Path(__file__).parents[1] / "projects"


def _reqs(manifests):
    return {r.requirement.name: (str(r.requirement), r.source) for r in manifests.requirements}


def test_requirements_txt_features():
    m = read_manifests(PROJECTS / "deps_requirements")
    reqs = _reqs(m)
    assert reqs["six"] == ("six>=1.16", "reqs/base.txt:1")  # -r include, inline comment
    assert reqs["Flask"][1] == "requirements.txt:6"  # continuation keeps the first line number
    flask = Requirement(reqs["Flask"][0])
    assert flask.extras == {"async"} and flask.specifier == SpecifierSet(">=3.0,<4")
    assert reqs["requests"][0] == 'requests; python_version >= "3.8"'
    assert Requirement(reqs["mypkg"][0]).url == "https://example.invalid/mypkg-1.0.tar.gz"
    assert Requirement(reqs["otherpkg"][0]).url.startswith("https://example.invalid/other-2.0.zip")
    assert reqs["python_dateutil"] == ("python_dateutil==2.9.0", "requirements.txt:13")
    assert [str(c.requirement) for c in m.constraints] == ["urllib3<3"]
    assert m.index_args == ["--index-url", "https://pypi.org/simple",
                            "--extra-index-url", "https://example.invalid/simple"]
    assert m.files == ["requirements.txt", "reqs/base.txt", "reqs/constraints.txt"]


def test_requirements_txt_bad_line_names_file_and_line(tmp_path):
    (tmp_path / "requirements.txt").write_text("flask\n\nnot a requirement !!\n")
    with pytest.raises(DependencyError, match=r"requirements.txt:3"):
        read_manifests(tmp_path)


def test_requirements_include_cycle(tmp_path):
    (tmp_path / "requirements.txt").write_text("-r other.txt\n")
    (tmp_path / "other.txt").write_text("-r requirements.txt\n")
    with pytest.raises(DependencyError, match="cycle"):
        parse_requirements_file(tmp_path / "requirements.txt", tmp_path)


def test_pyproject_dependencies_only_and_requires_python():
    m = read_manifests(PROJECTS / "deps_pyproject")
    assert _reqs(m) == {"fastapi": ("fastapi>=0.110", "pyproject.toml:6"),
                        "PyJWT": ("PyJWT[crypto]>=2", "pyproject.toml:7")}  # no pytest, no coverage
    assert [(p.text, p.source, p.pin) for p in m.python] == [(">=3.12", "pyproject.toml:4", False)]


def test_pipfile_and_lock():
    m = read_manifests(PROJECTS / "deps_pipfile")
    sources = [(str(r.requirement), r.source) for r in m.requirements]
    assert ("requests", "Pipfile:7") in sources
    assert ("django[bcrypt]>=4.2", "Pipfile:8") in sources
    assert ("itsdangerous==2.2.0", "Pipfile:9") in sources
    assert ('requests==2.32.3; python_version >= "3.8"', "Pipfile.lock:4") in sources
    assert ("idna==3.10", "Pipfile.lock:5") in sources
    assert not any("pytest" in s for s, _ in sources)  # dev-packages / develop ignored
    assert [(p.text, p.pin, str(p.specifier)) for p in m.python] == [("3.12", True, "==3.12.*")]


def test_uv_lock_root_dependencies_pinned_and_transitives_constrained():
    m = read_manifests(PROJECTS / "deps_uvlock")
    sources = [(str(r.requirement), r.source) for r in m.requirements]
    assert ("itsdangerous>=2", "pyproject.toml:5") in sources
    assert any(s == "itsdangerous==2.2.0" and w.startswith("uv.lock:") for s, w in sources)
    assert [str(c.requirement) for c in m.constraints] == ["markupsafe==3.0.2"]
    merged = merge(m.requirements, m.constraints, [], ImportMap.build())
    assert merged.lines() == ["itsdangerous==2.2.0,>=2"]


def test_edgeone_requirements_location_and_python_version():
    m = read_manifests(PROJECTS / "deps_edgeone")
    assert _reqs(m) == {"flask": ("flask==3.0.3", "cloud-functions/requirements.txt:1")}  # root one ignored
    assert [p.source for p in m.python] == [".python-version:1"]


def test_declared_beats_detected_and_canonical_names():
    declared = [SourcedRequirement(Requirement("PyYAML==6.0.2"), "requirements.txt:1"),
                SourcedRequirement(Requirement("Flask_Login>=0.6"), "requirements.txt:2")]
    detected = [DetectedImport("yaml", "api/a.py", 3), DetectedImport("flask_login", "api/a.py", 4),
                DetectedImport("requests", "api/b.py", 1)]
    merged = merge(declared, [], detected, ImportMap.build())
    by_name = {r.name: r for r in merged.requirements}
    assert by_name["pyyaml"].line == "PyYAML==6.0.2" and by_name["pyyaml"].declared
    assert by_name["pyyaml"].sources == ("requirements.txt:1",)
    assert by_name["flask-login"].declared and by_name["flask-login"].modules == ("flask_login",)
    assert [r.name for r in merged.undeclared] == ["requests"]
    assert by_name["requests"].sources == ("detected in api/b.py:1",)


def test_same_name_in_two_files_combines_specifiers_and_extras():
    declared = [SourcedRequirement(Requirement("flask>=3"), "requirements.txt:1"),
                SourcedRequirement(Requirement("Flask[async]<4"), "pyproject.toml:6")]
    merged = merge(declared, [], [], ImportMap.build())
    (req,) = merged.requirements
    assert Requirement(req.line).specifier == SpecifierSet(">=3,<4")
    assert Requirement(req.line).extras == {"async"}
    assert req.sources == ("requirements.txt:1", "pyproject.toml:6")


def test_conflict_names_both_files_and_lines():
    m = read_manifests(PROJECTS / "deps_conflict")
    with pytest.raises(DependencyError) as info:
        merge(m.requirements, m.constraints, [], ImportMap.build())
    text = str(info.value)
    assert "requirements.txt:1" in text and "pyproject.toml:4" in text and "flask" in text


def test_conflict_ignores_requirements_whose_marker_does_not_apply():
    declared = [SourcedRequirement(Requirement("foo==1; python_version < '3.10'"), "a.txt:1"),
                SourcedRequirement(Requirement("foo==2; python_version >= '3.10'"), "a.txt:2")]
    merged = merge(declared, [], [], ImportMap.build(), {"python_version": "3.12", "python_full_version": "3.12.1"})
    assert len(merged.requirements) == 2  # both lines go to uv, which applies the markers


@pytest.mark.parametrize(
    "spec, ok",
    [
        ("==2.0,>=3", False), ("<2,>=2", False), ("==1.0,==1.1", False), (">1.2,<1.2.1", True),
        (">=1.2,<=1.2", True), ("~=1.4,<1.4", False), ("==1.*,>=1.9", True), ("==1.*,>=2", False),
        ("!=1.0,==1.0", False), (">=3", True), ("", True), ("~=2.2,>=2.3,<2.4", True),
    ],
)
def test_satisfiable_heuristic(spec, ok):
    assert satisfiable(SpecifierSet(spec)) is ok


def test_pipfile_sources_become_index_options(tmp_path):
    (tmp_path / "Pipfile").write_text(
        '[[source]]\nurl = "https://pypi.org/simple"\nname = "pypi"\n\n'
        '[[source]]\nurl = "https://mirror.example.invalid/simple/"\nname = "mirror"\n\n[packages]\nsix = "*"\n')
    m = read_manifests(tmp_path)
    assert m.index_args == ["--extra-index-url", "https://mirror.example.invalid/simple"]
