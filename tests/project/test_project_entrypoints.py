"""Static entrypoint detection (SPEC §2): every exported-name form, the kinds, the precedence."""

from __future__ import annotations

import textwrap

import pytest

from fnserve.project.entrypoints import entry_for_attr, scan_source
from fnserve.project.types import EntryKind


def scan(source: str):
    return scan_source(textwrap.dedent(source), "api/x.py")


HANDLER_CLASS = """
from http.server import BaseHTTPRequestHandler

class {name}(BaseHTTPRequestHandler):
    def do_GET(self):
        pass

    def do_POST(self):
        pass
"""


@pytest.mark.parametrize("name", ["handler", "Handler"])
def test_handler_class_is_handler_kind_with_its_methods(name):
    entry = scan(HANDLER_CLASS.format(name=name)).entry
    assert (entry.kind, entry.attr, entry.methods) == (EntryKind.HANDLER, name, ("GET", "POST"))
    assert entry.line == 4


def test_handler_methods_include_local_base_classes_and_aliases():
    entry = scan("""
        from http.server import BaseHTTPRequestHandler

        class Base(BaseHTTPRequestHandler):
            def do_GET(self): ...
            do_HEAD = do_GET

        class MyHandler(Base):
            def do_DELETE(self): ...

        handler = MyHandler
    """).entry
    assert entry.kind is EntryKind.HANDLER
    assert entry.methods == ("DELETE", "GET", "HEAD")


@pytest.mark.parametrize(
    "source",
    [
        "def handler(event, context):\n    return {'statusCode': 200}\n",
        "async def handler(event, context):\n    return {}\n",
        "from mangum import Mangum\nfrom starlette.applications import Starlette\napi = Starlette()\nhandler = Mangum(api)\n",
        "handler = lambda event, context: {'statusCode': 204}\n",
    ],
    ids=["def", "async-def", "mangum", "lambda-expr"],
)
def test_lambda_handler_forms(source):
    entry = scan(source).entry
    assert (entry.kind, entry.attr) == (EntryKind.LAMBDA, "handler")


@pytest.mark.parametrize(
    "source",
    [
        "from flask import Flask\napp = Flask(__name__)\n",
        "from fasthtml.common import fast_app\napp, rt = fast_app()\n",
        "from fastapi import FastAPI\napp: FastAPI = FastAPI()\n",
        "from server import app\n",
        "import server as app\n",
        "def app(environ, start_response):\n    return []\n",
        "async def app(scope, receive, send):\n    pass\n",
        "class app:\n    def __call__(self, environ, start_response): ...\n",
        "try:\n    from fast import app\nexcept ImportError:\n    from slow import app\n",
        "import os\nif os.environ.get('X'):\n    app = object()\n",
        "(first, *rest), app = ((1, 2), 3)\n",
    ],
    ids=["assign", "tuple-unpack", "annotated", "from-import", "import-as", "def-wsgi", "def-asgi",
         "class", "try-import", "if-block", "nested-unpack"],
)
def test_app_binding_forms(source):
    entry = scan(source).entry
    assert (entry.kind, entry.attr) == (EntryKind.APP, "app")


def test_application_is_its_own_kind():
    entry = scan("from django.core.wsgi import get_wsgi_application\napplication = get_wsgi_application()\n").entry
    assert (entry.kind, entry.attr, entry.line) == (EntryKind.APPLICATION, "application", 2)


@pytest.mark.parametrize(
    "source, kind, attr",
    [
        (HANDLER_CLASS.format(name="handler") + "app = object()\n", EntryKind.APP, "app"),
        (HANDLER_CLASS.format(name="handler") + "application = object()\n", EntryKind.APPLICATION, "application"),
        ("application = object()\napp = object()\n", EntryKind.APP, "app"),
        (HANDLER_CLASS.format(name="Handler") + HANDLER_CLASS.format(name="handler"), EntryKind.HANDLER, "handler"),
        (HANDLER_CLASS.format(name="Handler") + "\ndef handler(event, context):\n    pass\n", EntryKind.HANDLER, "Handler"),
    ],
    ids=["app>handler", "application>handler", "app>application", "handler>Handler", "Handler>lambda"],
)
def test_precedence(source, kind, attr):
    entry = scan(source).entry
    assert (entry.kind, entry.attr) == (kind, attr)


@pytest.mark.parametrize(
    "source",
    [
        "def create_app():\n    app = Flask(__name__)\n    return app\n",
        "App = object()\nmy_app = object()\n",
        "class Helper:\n    handler = None\n",
        "def Handler(event, context):\n    pass\n",
        "from flask import *\n",
        "",
    ],
    ids=["nested", "other-names", "class-attribute", "Handler-function", "star-import", "empty"],
)
def test_no_entry(source):
    result = scan(source)
    assert result.entry is None and result.error is None


def test_syntax_error_is_returned_with_line_not_raised():
    result = scan("import os\n\ndef broken(:\n    pass\n")
    assert result.entry is None
    assert result.error.severity == "error"
    assert (result.error.file, result.error.line) == ("api/x.py", 3)
    assert "syntax error" in result.error.message


def test_null_bytes_are_a_parse_error():
    result = scan_source(b"app = 1\x00\n", "api/x.py")
    assert result.error is not None and result.entry is None


def test_names_and_imports_are_recorded():
    result = scan("""
        import json, os.path
        from . import sibling
        from ..pkg.mod import thing as other

        def later():
            import lazy_mod
        x = 1
    """)
    assert result.names == ("json", "os", "sibling", "other", "later", "x")
    modules = {(ref.module, ref.names, ref.level) for ref in result.imports}
    assert ("", ("sibling",), 1) in modules
    assert ("pkg.mod", ("thing",), 2) in modules
    assert ("lazy_mod", (), 0) in modules
    assert ("os.path", (), 0) in modules


def test_entry_for_configured_attribute():
    result = scan("from flask import Flask\nserver = Flask(__name__)\napp = None\n")
    assert entry_for_attr(result, "server").kind is EntryKind.APP
    assert entry_for_attr(result, "server").attr == "server"
    assert entry_for_attr(result, "app").line == 3
    assert entry_for_attr(result, "missing") is None
