"""The loader (SPEC §2, §2.1, §4 last bullet): kinds, load errors, module names, shadowing, and
the runtime running on other Pythons (3.9) loaded under a private package name."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import runtime_harness as H

from fnserve.runtime.failures import LoadError
from fnserve.runtime.loader import classify, load_function

RUNTIME = Path(__file__).resolve().parents[2] / "src" / "fnserve" / "runtime"


@pytest.fixture
def root(tmp_path, monkeypatch):
    root = H.project("runtime_vercel", tmp_path)
    monkeypatch.chdir(root)
    with H.isolated(root):
        yield root


def write(root, rel, text):
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return rel


@pytest.mark.parametrize(
    "rel, attr, kind",
    [
        ("api/hello.py", "handler", "handler"),
        ("api/wsgi_raw.py", "app", "wsgi"),
        ("api/flaskapp.py", "app", "wsgi"),
        ("api/fast.py", "app", "asgi"),
        ("api/mangum_fn.py", "handler", "lambda"),
        ("api/lambda_plain.py", "handler", "lambda"),
        ("api/asgi_raw.py", "app", "asgi"),
    ],
)
def test_kinds(root, rel, attr, kind):
    assert load_function(H.spec(root, rel, attr=attr)).kind == kind


def test_classify_rules():
    async def coro(scope, receive, send): ...
    def three(scope, receive, send): ...
    def two(environ, start_response): ...

    class AsyncCall:
        async def __call__(self, *args): ...

    Starlette = type("Starlette", (), {"__module__": "starlette.applications", "__call__": lambda self, *a: None})
    assert classify(coro, "app", "app", "f") == "asgi"
    assert classify(three, "app", "app", "f") == "asgi"
    assert classify(two, "app", "app", "f") == "wsgi"
    assert classify(AsyncCall(), "app", "app", "f") == "asgi"
    assert classify(Starlette(), "app", "app", "f") == "asgi"  # known framework, by name only
    assert classify(lambda event, context: None, "handler", "lambda", "f") == "lambda"
    from http.server import BaseHTTPRequestHandler

    assert classify(type("Api", (BaseHTTPRequestHandler,), {}), "app", "app", "f") == "handler"
    with pytest.raises(LoadError, match="an instance, not its class"):
        classify(type("App", (), {"__call__": lambda self, environ, start_response: None}), "app", "app", "f")


def test_load_error_names_file_attr_and_what_was_found(root):
    rel = write(root, "api/bad.py", "app = {'not': 'an app'}\n")
    with pytest.raises(LoadError) as info:
        load_function(H.spec(root, rel))
    err = info.value
    assert str(err).startswith("api/bad.py: `app` is a `dict`, expected a WSGI or ASGI application")
    assert (err.file, err.attr, err.found) == ("api/bad.py", "app", "a dict")
    assert err.hint and LoadError.from_dict(json.loads(json.dumps(err.to_dict()))).found == "a dict"


def test_import_error_keeps_the_user_traceback(root):
    rel = write(root, "api/broken.py", "import os\n\ndef helper():\n    return 1 / 0\n\nhelper()\n")
    with pytest.raises(LoadError) as info:
        load_function(H.spec(root, rel))
    err = info.value
    assert err.found == "ZeroDivisionError" and "api/broken.py" in err.message
    assert 'broken.py", line 6' in err.traceback and "loader.py" not in err.traceback
    assert "api.broken" not in sys.modules


def test_handler_class_must_subclass_base_handler(root):
    rel = write(root, "api/notahandler.py", "class handler:\n    def do_GET(self): pass\n")
    with pytest.raises(LoadError, match="does not subclass http.server.BaseHTTPRequestHandler"):
        load_function(H.spec(root, rel, attr="handler", kind="handler"))


def test_missing_attr_falls_back_by_precedence(root):
    fn = load_function(H.spec(root, "api/hello.py", attr="app"))
    assert fn.kind == "handler"
    rel = write(root, "api/empty.py", "x = 1\n")
    with pytest.raises(LoadError) as info:
        load_function(H.spec(root, rel))
    assert info.value.found == "nothing"


def test_bracket_module_name_relative_and_sibling_imports(root):
    fn = load_function(H.spec(root, "api/users/[id].py"))
    assert fn.module.NAME == "api.users.[id]" and sys.modules["api.users.[id]"] is fn.module
    assert str(root / "api" / "users" / "[id].py") == fn.module.LOADED_FROM
    status, _, body, _ = H.call(fn.app, H.http_scope(path="/api/users/42", params={"id": "42"}))
    assert (status, body) == (200, b"hello 42|hello x")


def test_project_json_py_and_flask_folder_are_harmless(root):
    # root/json.py raises if imported; root/flask/ is a folder without __init__.py
    fn = load_function(H.spec(root, "api/flaskapp.py"))
    import flask

    assert hasattr(flask, "Flask") and "site-packages" in fn.module.flask.__file__
    assert "site-packages" not in (sys.modules["json"].__file__ or "")
    status, _, body, _ = H.call(fn.app, H.http_scope(path="/api/flaskapp/x"))
    assert status == 200 and json.loads(body)["path"] == "/api/flaskapp/x"


def test_edgeone_flask_route_folder_is_imported_under_a_private_name(tmp_path, monkeypatch):
    root = H.project("runtime_edgeone", tmp_path)
    monkeypatch.chdir(root)
    with H.isolated(root):
        fn = load_function(H.spec(root, "cloud-functions/flask/index.py", layout="edgeone", attr="handler"))
        status, _, body, _ = H.call(fn.app, H.http_scope(path="/flask"))
        data = json.loads(body)
        assert data["has_Flask"] and "site-packages" in data["flask_file"]
        assert data["module"] == "_fnserve_user.flask.index"


SCRIPT = r"""
import asyncio, importlib.util, sys
assert "json" not in sys.modules  # the project's json.py must lose against the runtime's own import
runtime_dir, project, tests_dir = sys.argv[1:4]
spec = importlib.util.spec_from_file_location("_fnserve_runtime", runtime_dir + "/__init__.py",
                                              submodule_search_locations=[runtime_dir])
pkg = importlib.util.module_from_spec(spec); sys.modules["_fnserve_runtime"] = pkg; spec.loader.exec_module(pkg)
from _fnserve_runtime.loader import load_function

def scope(path, query=b""):
    return {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": path,
            "raw_path": path.encode(), "root_path": "", "query_string": query,
            "headers": [(b"host", b"t")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}

async def call(app, sc):
    out = []
    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}
    async def send(m):
        out.append(m)
    await app(sc, receive, send)
    return out[0]["status"], b"".join(m.get("body", b"") for m in out[1:]).decode("latin-1")

def spec_for(rel, attr):
    return {"id": rel, "path": project + "/" + rel, "module": rel[:-3].replace("/", "."), "attr": attr,
            "kind": "app", "layout": "vercel", "import_roots": [project], "project_root": project,
            "body_limit": 1000, "concurrency": 4}

async def main():
    results = {}
    for rel, attr, path, query in [("api/hello.py", "handler", "/api/hello/echo", b"say%20hello=nice"),
                                   ("api/wsgi_raw.py", "app", "/api/wsgi_raw/cookies", b""),
                                   ("api/hello.py", "handler", "/api/hello/png", b""),
                                   ("api/asgi_raw.py", "app", "/api/asgi_raw", b""),
                                   ("api/lambda_plain.py", "handler", "/api/lambda_plain/text", b"")]:
        fn = load_function(spec_for(rel, attr))
        await fn.startup()
        results[path] = [fn.kind] + list(await call(fn.app, scope(path, query)))
        await fn.shutdown(1.0)
    results["fnserve_imported"] = any(m == "fnserve" or m.startswith("fnserve.") for m in sys.modules)
    results["version"] = list(sys.version_info[:2])
    import json
    results["json_is_stdlib"] = json.__file__.startswith(sys.base_prefix)
    print(json.dumps(results))

asyncio.run(main())
"""


@pytest.mark.parametrize("version", ["3.9.18", "3.13.0"])
def test_runtime_on_other_pythons_under_a_private_name(tmp_path, version):
    python = Path("/root/.pyenv/versions") / version / "bin" / "python"
    if not python.exists():
        pytest.skip("Python %s is not installed at %s" % (version, python))
    root = H.project("runtime_vercel", tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    out = subprocess.run([str(python), "-I", "-c", SCRIPT, str(RUNTIME), str(root), str(Path(__file__).parents[1])],
                         cwd=root, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout.strip().splitlines()[-1])
    assert results["version"] == [int(x) for x in version.split(".")[:2]]
    assert results["fnserve_imported"] is False and results["json_is_stdlib"] is True
    kind, status, body = results["/api/hello/echo"]
    assert (kind, status, json.loads(body)["path"]) == ("handler", 200, "/api/hello/echo?say%20hello=nice")
    assert results["/api/wsgi_raw/cookies"] == ["wsgi", 200, "ok"]
    assert results["/api/asgi_raw"] == ["asgi", 200, "hi /api/asgi_raw 1"]
    assert results["/api/lambda_plain/text"] == ["lambda", 200, "just text"]
    kind, status, body = results["/api/hello/png"]
    assert status == 200 and body.encode("latin-1") == (root / "static" / "logo.png").read_bytes()


def test_syntax_error_and_bad_lambda_are_load_errors(root):
    rel = write(root, "api/syntax.py", "def broken(:\n")
    with pytest.raises(LoadError) as info:
        load_function(H.spec(root, rel))
    assert info.value.found == "SyntaxError" and "syntax.py" in info.value.traceback
    rel = write(root, "api/notcallable.py", "handler = 5\n")
    with pytest.raises(LoadError, match="`handler` is an `int`, expected a lambda handler"):
        load_function(H.spec(root, rel, attr="handler", kind="lambda"))


def test_regular_package_init_runs_and_index_module(root):
    write(root, "api/pkg/__init__.py", "MARK = 'init ran'\n")
    rel = write(root, "api/pkg/index.py", "from . import MARK\n\ndef app(environ, start_response):\n"
                "    start_response('200 OK', [])\n    return [MARK.encode()]\n")
    fn = load_function(H.spec(root, rel))
    assert fn.module.__name__ == "api.pkg.index" and sys.modules["api.pkg"].MARK == "init ran"
    assert H.call(fn.app, H.http_scope(path="/api/pkg"))[2] == b"init ran"
