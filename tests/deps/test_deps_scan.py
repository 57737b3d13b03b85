"""Import scan and import→distribution mapping (SPEC §7, issue 5 item 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fnserve.deps.detect import scan_file, scan_project, third_party_imports
from fnserve.deps.mapping import ImportMap
from fnserve.deps.merge import merge

PROJECTS = Path(__file__).parents[1] / "projects"
STDLIB = frozenset(sys.stdlib_module_names)


@pytest.fixture(scope="module")
def scanned():
    root = PROJECTS / "deps_imports"
    found, local = scan_project(root)
    return found, local, third_party_imports(found, local, STDLIB)


@pytest.mark.parametrize(
    "module, dist",
    [
        ("yaml", "PyYAML"),
        ("PIL", "Pillow"),
        ("PIL.Image", "Pillow"),
        ("cv2", "opencv-python"),
        ("sklearn", "scikit-learn"),
        ("sklearn.linear_model", "scikit-learn"),
        ("jwt", "PyJWT"),
        ("bs4", "beautifulsoup4"),
        ("dotenv", "python-dotenv"),
        ("google.protobuf", "protobuf"),
        ("google.protobuf.json_format", "protobuf"),
        ("google.cloud.storage", "google-cloud-storage"),
        ("dateutil", "python-dateutil"),
        ("flask", "Flask"),
        ("somethingunknown", "somethingunknown"),
    ],
)
def test_mapping_examples(module, dist):
    assert ImportMap.build().distribution_for(module)[0] == dist


def test_mapping_is_hundreds_of_entries_and_overridable():
    default = ImportMap.build()
    assert len(default) > 800
    custom = ImportMap.build({"yaml": "ruamel.yaml", "internal_sdk": "acme-internal-sdk"})
    assert custom.distribution_for("yaml")[0] == "ruamel.yaml"
    assert custom.distribution_for("internal_sdk.client")[0] == "acme-internal-sdk"


def test_all_names_of_import_and_from_module(tmp_path):
    (tmp_path / "m.py").write_text("import a, b.c as d\nfrom x.y import z\nfrom . import rel\nfrom .p import q\n")
    got = [(i.module, i.line) for i in scan_file(tmp_path / "m.py", tmp_path)]
    assert got == [("a", 1), ("b.c", 1), ("x.y", 2)]


def test_imports_inside_functions_and_optional_try(scanned):
    found, _local, _third = scanned
    by_module = {i.module: i for i in found}
    assert by_module["numpy"].optional is False  # inside a function: still required
    assert by_module["ujson"].optional is True  # guarded by except ImportError
    assert by_module["numpy"].file == "api/index.py"


def test_optional_handlers(tmp_path):
    src = (
        "try:\n    import a\nexcept (ValueError, ModuleNotFoundError):\n    pass\n"
        "try:\n    import b\nexcept ValueError:\n    pass\n"
        "try:\n    import c\nexcept:\n    pass\n"
    )
    (tmp_path / "m.py").write_text(src)
    optional = {i.module: i.optional for i in scan_file(tmp_path / "m.py", tmp_path)}
    assert optional == {"a": True, "b": False, "c": True}


def test_type_checking_imports_are_optional(tmp_path):
    """Imports under ``if TYPE_CHECKING:`` never run: reported like guarded ones, never installed."""
    (tmp_path / "m.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import mypy_boto3_s3\n"
                                   "else:\n    import boto3\n")
    optional = {i.module: i.optional for i in scan_file(tmp_path / "m.py", tmp_path)}
    assert optional == {"typing": False, "mypy_boto3_s3": True, "boto3": False}


def test_stdlib_local_relative_and_excluded_dirs_are_not_third_party(scanned):
    _found, local, third = scanned
    tops = {i.top for i in third}
    assert {"os", "sys", "json", "__future__"}.isdisjoint(tops)  # stdlib
    assert {"lib", "mypkg", "localmod", "api"} <= local  # sibling package, src/ package, root module
    assert {"lib", "mypkg", "localmod"}.isdisjoint(tops)
    assert "should_not_be_seen_tests" not in tops and "should_not_be_seen_venv" not in tops
    assert {"yaml", "requests", "PIL", "cv2", "sklearn", "jwt", "bs4", "dotenv", "google", "numpy",
            "httpx", "attr", "ujson"} == tops


def test_detected_set_maps_every_example(scanned):
    _found, _local, third = scanned
    merged = merge([], [], third, ImportMap.build())
    names = {r.name for r in merged.requirements}
    assert {"pyyaml", "pillow", "opencv-python", "scikit-learn", "pyjwt", "beautifulsoup4",
            "python-dotenv", "protobuf", "requests", "numpy", "httpx", "attrs"} == names
    assert [r.name for r in merged.optional] == ["ujson"]
    protobuf = next(r for r in merged.requirements if r.name == "protobuf")
    assert protobuf.sources == ("detected in api/index.py:9", "detected in api/index.py:10")


def test_target_python_stdlib_is_used(tmp_path):
    """A module that is stdlib on one Python and not on another follows the TARGET's list."""
    (tmp_path / "m.py").write_text("import tomllib\nimport distutils\n")
    found = scan_file(tmp_path / "m.py", tmp_path)
    py39 = frozenset(STDLIB - {"tomllib"})
    py312 = frozenset(STDLIB - {"distutils"})
    assert [i.module for i in third_party_imports(found, frozenset(), py39)] == ["tomllib"]
    assert [i.module for i in third_party_imports(found, frozenset(), py312)] == ["distutils"]


def test_syntax_error_file_is_skipped(scanned):
    found, _local, _third = scanned
    assert not any(i.file == "api/broken.py" for i in found)


def test_scan_cache_reuses_unchanged_files(tmp_path, monkeypatch):
    from fnserve.deps import detect

    (tmp_path / "api").mkdir()
    (tmp_path / "api" / "a.py").write_text("import yaml\n")
    (tmp_path / "api" / "b.py").write_text("import requests\n")
    cache = tmp_path / ".fnserve" / "imports.json"
    first, _ = scan_project(tmp_path, cache)
    parsed: list[str] = []
    real = detect.scan_file
    monkeypatch.setattr(detect, "scan_file", lambda path, root: parsed.append(path.name) or real(path, root))
    (tmp_path / "api" / "b.py").write_text("import requests\nimport httpx\n")
    second, _ = scan_project(tmp_path, cache)
    assert parsed == ["b.py"]
    assert [i.module for i in second] == ["yaml", "requests", "httpx"]
    assert [i.module for i in first] == ["yaml", "requests"]


def test_namespace_folder_named_like_a_distribution_does_not_hide_it(tmp_path):
    """EdgeOne ``cloud-functions/flask/index.py`` (no ``__init__.py``) imports Flask: the folder is
    a namespace package, which an installed Flask shadows at import time, so Flask is still a
    dependency; a namespace folder that imports reach into (``app/main.py``) stays local."""
    cf = tmp_path / "cloud-functions"
    (cf / "flask").mkdir(parents=True)
    (cf / "flask" / "index.py").write_text("from flask import Flask\napp = Flask(__name__)\n")
    (tmp_path / "app").mkdir()
    (tmp_path / "app" / "main.py").write_text("import yaml\n")
    (cf / "api").mkdir()
    (cf / "api" / "a.py").write_text("from app.main import thing\nfrom app import main\nimport app\n")
    found, local = scan_project(tmp_path)
    third = [(i.file, i.module) for i in third_party_imports(found, local, STDLIB)]
    assert ("cloud-functions/flask/index.py", "flask") in third
    assert ("app/main.py", "yaml") in third
    assert not [m for f, m in third if m.startswith("app")]
