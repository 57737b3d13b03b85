"""The one import scan (``project.importscan``) and its rule for what is local (``project.importpath``)."""

from __future__ import annotations

import textwrap
from pathlib import Path

from fnserve.project.importpath import ImportPath, is_local, project_import_path, reached_namespaces
from fnserve.project.importscan import ImportRef, ImportScanner, imports_of, parse_source, scan_imports
from fnserve.project.types import Problem


def refs(source: str) -> dict[str, ImportRef]:
    tree = parse_source(textwrap.dedent(source), "m.py")
    assert not isinstance(tree, Problem)
    return {ref.module or "." * ref.level: ref for ref in imports_of(tree)}


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_every_statement_in_source_order_with_names_levels_and_lines():
    tree = parse_source("import a, b.c as d\nfrom x.y import z\nfrom . import sib\nfrom ..pkg.mod import t\n"
                        "from star import *\n", "m.py")
    assert not isinstance(tree, Problem)
    got = [(r.module, r.names, r.level, r.line) for r in imports_of(tree)]
    assert got == [("a", (), 0, 1), ("b.c", (), 0, 1), ("x.y", ("z",), 0, 2), ("", ("sib",), 1, 3),
                   ("pkg.mod", ("t",), 2, 4), ("star", (), 0, 5)]
    assert [r.top for r in imports_of(tree)] == ["a", "b", "x", "", "pkg", "star"]


def test_guarded_imports_optional_in_body_fallback_in_handler():
    found = refs("""
        try:
            import ujson
        except ImportError:
            import json
        else:
            import after_ok
        try:
            import plain
        except ValueError:
            import handled_value
        try:
            import inner
        except (KeyError, ModuleNotFoundError):
            pass
        try:
            import bare
        except:
            pass
    """)
    assert (found["ujson"].optional, found["ujson"].fallback) == (True, False)
    assert (found["json"].optional, found["json"].fallback) == (False, True)
    assert found["json"].guarded and found["ujson"].guarded
    assert not found["after_ok"].guarded  # ``else`` runs only when the body worked: not a guard
    assert not found["plain"].guarded and not found["handled_value"].guarded  # ValueError guards no import
    assert found["inner"].optional and found["bare"].optional


def test_function_level_imports_are_not_at_load_but_class_bodies_are():
    found = refs("""
        import top
        def f(x=__import__("os")):
            import lazy
            class Inner:
                import deeper
        async def g():
            from lazy_async import thing
        class C:
            import in_class
            def method(self):
                import in_method
        handler = lambda: __import__("x")
        if True:
            import in_if
        for _ in range(1):
            import in_loop
    """)
    assert found["top"].at_load and found["in_class"].at_load and found["in_if"].at_load and found["in_loop"].at_load
    assert not any(found[m].at_load for m in ("lazy", "deeper", "lazy_async", "in_method"))


def test_type_checking_blocks():
    found = refs("""
        from typing import TYPE_CHECKING
        import typing
        if TYPE_CHECKING:
            import only_types
        else:
            import at_runtime
        if typing.TYPE_CHECKING:
            from stubs_pkg import Thing
        if not TYPE_CHECKING:
            import runtime_too
        else:
            import types_again
    """)
    assert found["only_types"].type_checking and found["stubs_pkg"].type_checking and found["types_again"].type_checking
    assert not found["at_runtime"].type_checking and not found["runtime_too"].type_checking
    assert not found["typing"].type_checking


def test_syntax_error_is_reported_not_raised(tmp_path):
    (tmp_path / "bad.py").write_text("import os\ndef broken(:\n")
    result = scan_imports(tmp_path / "bad.py", "api/bad.py")
    assert result.imports == ()
    assert result.error is not None and (result.error.file, result.error.line) == ("api/bad.py", 2)
    assert "syntax error" in result.error.message
    missing = scan_imports(tmp_path / "nope.py", "nope.py")
    assert missing.error is not None and "cannot read" in missing.error.message
    assert isinstance(parse_source(b"x = 1\x00", "n.py"), Problem)


def test_scanner_cache_reparses_only_changed_files(tmp_path):
    write(tmp_path, {"a.py": "import yaml\n", "b.py": "import requests\n"})
    scanner = ImportScanner()
    assert [r.module for r in scanner.scan(tmp_path / "a.py").imports] == ["yaml"]
    scanner.scan(tmp_path / "b.py")
    scanner.scan(tmp_path / "a.py")
    assert scanner.parses == 2
    (tmp_path / "a.py").write_text("import yaml\nimport httpx\n")
    assert [r.module for r in scanner.scan(tmp_path / "a.py").imports] == ["yaml", "httpx"]
    assert scanner.parses == 3


def test_local_modules_packages_and_third_party(tmp_path):
    root = write(tmp_path, {
        "api/index.py": "",
        "localmod.py": "",
        "lib/__init__.py": "",
        "lib/db.py": "",
        "lib/sub/__init__.py": "",
        "lib/sub/deep.py": "",
        "ext.cpython-311-x86_64-linux-gnu.so": "",
    })
    path = ImportPath([root])
    file = root / "api" / "index.py"

    def res(module: str, *names: str):
        return path.resolve(ImportRef(module, names), file)

    assert res("localmod").kind == "module" and res("localmod").files == (root / "localmod.py",)
    assert res("lib.db").files == (root / "lib" / "__init__.py", root / "lib" / "db.py")
    assert res("lib", "db", "missing").files == (root / "lib" / "__init__.py", root / "lib" / "db.py")
    assert res("lib.sub.deep").files == (root / "lib/__init__.py", root / "lib/sub/__init__.py", root / "lib/sub/deep.py")
    assert res("ext").local and res("ext").files == ()
    flask = res("flask")
    assert flask.kind == "external" and not flask.local and flask.files == ()
    assert res("os.path").kind == "external"


def test_relative_imports_resolve_against_the_package(tmp_path):
    root = write(tmp_path, {"lib/__init__.py": "", "lib/db.py": "", "lib/models.py": "", "lib/sub/x.py": ""})
    path = ImportPath([root])
    here = root / "lib" / "sub" / "x.py"
    up = path.resolve(ImportRef("models", (), 2), here)
    assert up.kind == "relative" and up.local
    assert up.files == (root / "lib" / "__init__.py", root / "lib" / "models.py")
    sib = path.resolve(ImportRef("", ("db", "models"), 1), root / "lib" / "db.py")
    assert sib.files == (root / "lib" / "__init__.py", root / "lib" / "db.py", root / "lib" / "models.py")
    assert path.resolve(ImportRef("", ("nothing",), 1), here).local  # relative: local even if missing


def test_a_regular_package_wins_over_a_namespace_folder_and_front_over_back(tmp_path):
    root = write(tmp_path, {
        "app/readme.py": "",                        # root/app: a namespace portion
        "cloud-functions/app/__init__.py": "",      # a regular package further along
        "cloud-functions/app/main.py": "",
        "api/helper.py": "",
        "api/x.py": "",
        "helper.py": "",
    })
    path = ImportPath([root, root / "cloud-functions"], [root / "api"])
    r = path.resolve(ImportRef("app.main"), root / "api" / "x.py")
    assert r.kind == "module" and r.files[-1] == root / "cloud-functions" / "app" / "main.py"
    assert path.resolve(ImportRef("helper"), root / "api" / "x.py").files == (root / "helper.py",)
    only_back = ImportPath([root / "cloud-functions"], [root / "api"])
    assert only_back.resolve(ImportRef("helper"), root / "api" / "x.py").files == (root / "api" / "helper.py",)


def test_namespace_folder_is_local_only_when_reached(tmp_path):
    """A folder without ``__init__.py`` loses to an installed package of that name (PEP 420): it is
    the project's only when some import reaches into it."""
    root = write(tmp_path, {"cloud-functions/flask/index.py": "", "app/main.py": ""})
    path = ImportPath([root, root / "cloud-functions"])
    file = root / "cloud-functions" / "flask" / "index.py"
    flask = path.resolve(ImportRef("flask", ("Flask",)), file)
    assert flask.kind == "namespace" and not flask.reaches and not is_local(flask)
    bare = path.resolve(ImportRef("app"), file)
    deep = path.resolve(ImportRef("app.main", ("thing",)), file)
    named = path.resolve(ImportRef("app", ("main",)), file)
    assert deep.local and named.local and not bare.local
    assert deep.files == (root / "app" / "main.py",)
    reached = reached_namespaces([flask, bare, deep])
    assert reached == {"app"}
    assert is_local(bare, reached) and not is_local(flask, reached)


def test_project_import_path_roots_then_every_files_folder(tmp_path):
    root = write(tmp_path, {"src/mypkg/__init__.py": "", "api/lib/__init__.py": "", "api/index.py": "",
                            "cloud-functions/shared/__init__.py": "", "localmod.py": ""})
    files = [root / "api" / "index.py", root / "api" / "lib" / "__init__.py"]
    path = project_import_path(root, files)
    assert path.folders == (root, root / "cloud-functions", root / "src", root / "api", root / "api" / "lib")
    assert {"mypkg", "lib", "shared", "localmod", "api"} <= path.top_level_names()
    assert all(path.resolve(ImportRef(m), files[0]).local for m in ("mypkg", "lib", "shared", "localmod"))


def test_scan_imports_reads_encoding_cookies(tmp_path):
    (tmp_path / "latin.py").write_bytes("# -*- coding: latin-1 -*-\nimport caf\xe9\n".encode("latin-1"))
    assert [r.module for r in scan_imports(tmp_path / "latin.py", "latin.py").imports] == ["café"]


def test_a_namespace_folder_of_data_files_is_not_reached(tmp_path):
    """``google/cloud/`` holding only credentials is not the project's ``google.cloud``."""
    root = write(tmp_path, {"google/cloud/key.json": "{}", "app/sub/x.py": "", "m.py": ""})
    path = ImportPath([root])
    file = root / "m.py"
    assert not path.resolve(ImportRef("google.cloud"), file).reaches
    assert not path.resolve(ImportRef("google.cloud", ("storage",)), file).reaches
    assert path.resolve(ImportRef("app.sub"), file).reaches  # a folder holding Python
    assert path.resolve(ImportRef("app", ("sub",)), file).reaches
    assert path.resolve(ImportRef("app.sub.x"), file).files == (root / "app" / "sub" / "x.py",)
