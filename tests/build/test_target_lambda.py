"""Target ``lambda`` in memory: the handler module (``lambda_entry``, shipped as
``fnserve_lambda.py``) fed API Gateway REST v1, HTTP API v2 and ALB events for each function
kind, loaded with fnserve's runtime loader as in the zip; the zip and SAM template rendered from a
build. The same functions under AWS's own runtime client: test_target_lambda_ric.py."""

from __future__ import annotations

import json
import re
import sys
import zipfile
from pathlib import Path

import pytest
from buildsupport import run_cli, write_project
from lambdasupport import CHECKS, FILES, SOURCES, decode, event

from fnserve.build.exceptions import BuildError
from fnserve.build.manifest import RouteRecord, read_manifest
from fnserve.build.output import build_output
from fnserve.build.targets import TARGETS
from fnserve.build.targets import lambda_entry as entry
from fnserve.build.targets.lambda_target import (
    LambdaTarget,
    api_paths,
    function_config,
    logical_id,
    zip_name,
)
from fnserve.config import load_config
from fnserve.runtime.loader import load_function

VERCEL_JSON = json.dumps({"functions": {"api/fastapi_app.py": {"memory": 512, "maxDuration": 12.5}}})


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A build (no env: the functions use this interpreter's Flask/FastAPI) with target lambda."""
    project = write_project(tmp_path_factory.mktemp("lam") / "p", {**FILES, "vercel.json": VERCEL_JSON})
    config = load_config(project, {"install": False}, {}, mode="build")
    lines: list[str] = []
    result = build_output(config, targets=("fnserve", "lambda"), say=lines.append)
    return result.output, read_manifest(result.output), lines


@pytest.fixture(scope="module")
def functions(built):
    """function id → ``LambdaFunction`` over the output's project/ (one "container" each)."""
    output, manifest, _ = built
    saved_path, saved_modules = list(sys.path), set(sys.modules)
    out = {}
    for fn in manifest.functions:
        config = function_config(fn, [r for r in manifest.routes if r.function == fn.id])
        loaded = load_function(entry.spec_of(config, str(output / "project")))
        out[fn.id] = entry.LambdaFunction(loaded.app, config["routes"], fn.layout, fn.id)
    yield out
    for function in out.values():
        function.close()
    sys.path[:] = saved_path
    for name in set(sys.modules) - saved_modules:
        if name == "api" or name.startswith(("api.", "_fnserve_user")):
            del sys.modules[name]


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("function_id", sorted(CHECKS))
def test_each_kind_answers_each_event_source(functions, function_id, source):
    CHECKS[function_id](functions[function_id].invoke, source)


def test_a_function_that_raises_answers_500_and_non_http_events_fail():
    async def broken(scope, receive, send):
        raise ValueError("boom")

    fn = entry.LambdaFunction(broken, [{"segments": [], "mount": True}], "app")
    status, headers, body = decode("v2", fn.invoke(event("v2", "GET", "/x")))
    assert status == 500 and json.loads(body)["error"] == {"code": "FUNCTION_INVOCATION_FAILED",
                                                           "message": "the function raised ValueError: boom"}
    with pytest.raises(entry.EventError, match="serves API Gateway"):
        fn.invoke({"Records": [{"eventSource": "aws:sqs"}]})
    fn.close()


def test_scope_of_each_source():
    """What the app sees: decoded path, raw path, query, client, scheme/server, stage removed."""
    v2 = event("v2", "GET", "/prod/api/a%20b", [("x", "1 2")])
    v2["requestContext"]["stage"] = "prod"
    request = entry.request_of(v2)
    scope = entry.build_scope(request, {}, "", "vercel")
    assert scope["path"] == "/api/a b" and scope["raw_path"] == b"/api/a%20b"
    assert scope["query_string"] == b"x=1+2" and scope["client"] == ("203.0.113.9", 0)
    assert scope["scheme"] == "https" and scope["server"] == ("example.com", 443)
    v1 = entry.request_of(event("v1", "GET", "/api/x", [("q", "a&b"), ("q", "é")]))
    assert v1["query"] == "q=a%26b&q=%C3%A9"
    alb = entry.request_of(event("alb-multi", "GET", "/api/x", [("q", "a&b")]))
    assert alb["query"] == "q=a%26b" and alb["client"] == ("203.0.113.9", 0)
    scope = entry.build_scope(entry.request_of(event("v1", "GET", "/api/users/7", [("y", "2")])), {"id": "7"}, "", "vercel")
    assert scope["query_string"] == b"y=2&id=7" and scope["fnserve.route_params"] == {"id": "7"}
    keys = entry.query_keys([["literal", "api"], ["catchall", "path"]])
    scope = entry.build_scope(entry.request_of(event("v2", "GET", "/api/a/b")), {"path": "a/b"}, "", "vercel", keys)
    assert scope["query_string"] == b"...path=a%2Fb"  # Vercel's key for [...path] (as fnserve start)
    scope = entry.build_scope(entry.request_of(event("v1", "GET", "/m/x")), {}, "/m", "edgeone")
    assert scope["query_string"] == b"" and scope["root_path"] == "/m"


def test_response_shapes():
    headers = [(b"content-type", b"text/html"), (b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"x", b"1")]
    v2 = entry.lambda_response("v2", 200, headers, b"<p>")
    assert v2 == {"statusCode": 200, "headers": {"content-type": "text/html", "x": "1"}, "cookies": ["a=1", "b=2"],
                  "body": "<p>", "isBase64Encoded": False}
    v1 = entry.lambda_response("v1", 200, headers, b"<p>")
    assert v1["headers"] == {"content-type": "text/html", "x": "1"} and v1["multiValueHeaders"] == {"set-cookie": ["a=1", "b=2"]}
    alb = entry.lambda_response("alb", 404, headers, b"\xff")
    assert alb["statusDescription"] == "404 Not Found" and alb["isBase64Encoded"] is True
    assert {k: v for k, v in alb["headers"].items() if k.lower() == "set-cookie"} == {"set-cookie": "a=1", "Set-cookie": "b=2"}
    multi = entry.lambda_response("alb", 200, headers, b"", multi_value=True)
    assert multi["multiValueHeaders"]["set-cookie"] == ["a=1", "b=2"] and "headers" not in multi
    gz = entry.lambda_response("v2", 200, [(b"content-type", b"text/plain"), (b"content-encoding", b"gzip")], b"abc")
    assert gz["isBase64Encoded"] is True


def test_route_matching_follows_fnserve():
    routes = [{"segments": [["literal", "api"], ["param", "id"]], "mount": False},
              {"segments": [["literal", "docs"], ["optional", "rest"]], "mount": False},
              {"segments": [["literal", "files"], ["catchall", "path"]], "mount": False},
              {"segments": [["literal", "app"]], "mount": True, "root_path": "/app"}]
    assert entry.match_route(routes, "/api/7/") == ({"id": "7"}, "")
    assert entry.match_route(routes, "/api/7/8") is None
    assert entry.match_route(routes, "/docs") == ({"rest": ""}, "")
    assert entry.match_route(routes, "/docs/a/b") == ({"rest": "a/b"}, "")
    assert entry.match_route(routes, "/files") is None
    assert entry.match_route(routes, "/files/a/b") == ({"path": "a/b"}, "")
    assert entry.match_route(routes, "/app/x/y") == ({}, "/app")
    assert entry.match_route(routes, "/apps") is None


def test_names_and_api_gateway_paths():
    def route(segments, mount=False):
        return RouteRecord("/x", tuple(segments), "f.py", "app", mount)

    assert api_paths(route([("literal", "api"), ("param", "id")])) == ["/api/{id}"]
    assert api_paths(route([("literal", "api"), ("catchall", "...path")])) == ["/api/{___path+}"]
    assert api_paths(route([("literal", "api"), ("optional", "rest")])) == ["/api", "/api/{rest+}"]
    assert api_paths(route([("literal", "api"), ("literal", "app")], mount=True)) == ["/api/app", "/api/app/{proxy+}"]
    assert api_paths(route([], mount=True)) == ["/", "/{proxy+}"]
    taken: set[str] = set()
    assert logical_id("api/users/[id].py", taken) == "ApiUsersIdFunction"
    assert logical_id("api/users/(id).py", taken) == "ApiUsersId2Function"
    zips: set[str] = set()
    assert zip_name("api/users/[id].py", zips) == "api-users-_id_.zip"
    assert zip_name("api/users/(id).py", zips) == "api-users-_id__2.zip"


def test_render_writes_zips_and_a_sam_template(built):
    output, manifest, lines = built
    template = json.loads((output / "lambda" / "template.yaml").read_text())
    assert template["Transform"] == "AWS::Serverless-2016-10-31"
    resources = template["Resources"]
    assert set(resources) == {"ApiHelloFunction", "ApiUsersIdFunction", "ApiFlaskAppFunction",
                              "ApiFastapiAppFunction", "ApiEventFunction"}
    fastapi = resources["ApiFastapiAppFunction"]["Properties"]
    assert fastapi["Handler"] == "fnserve_lambda.handler" and fastapi["Runtime"] == "python3.12"
    assert fastapi["MemorySize"] == 512 and fastapi["Timeout"] == 13 and fastapi["Architectures"] == ["x86_64"]
    assert [e["Properties"]["Path"] for e in fastapi["Events"].values()] == [
        "/api/fastapi_app", "/api/fastapi_app/{proxy+}", "/api/fastapi_app.py"]
    assert all(e["Type"] == "HttpApi" and e["Properties"]["Method"] == "ANY" for e in fastapi["Events"].values())
    users = resources["ApiUsersIdFunction"]["Properties"]
    assert [e["Properties"]["Path"] for e in users["Events"].values()] == ["/api/users/{id}"]
    assert users["MemorySize"] == 1024 and users["Timeout"] == 300
    with zipfile.ZipFile(output / "lambda" / users["CodeUri"]) as zf:
        names = set(zf.namelist())
        config = json.loads(zf.read("fnserve_lambda.json"))
        assert zf.read("fnserve_lambda.py") == Path(entry.__file__).read_bytes()
    assert {"fnserve_lambda.py", "fnserve_lambda.json", "_fnserve_runtime/loader.py", "_fnserve_runtime/handler.py",
            "api/users/[id].py"} <= names
    assert not any("__pycache__" in n or n.startswith("_vendor/") for n in names)  # built without an env
    assert config["environment"] == {"GREETING": "from-dotenv"}
    assert config["function"]["id"] == "api/users/[id].py" and config["routes"][0]["segments"] == [
        ["literal", "api"], ["literal", "users"], ["param", "id"]]
    assert any("target lambda: 5 function zip(s)" in line for line in lines)
    assert not list(output.glob(".lambda*"))  # no temporary folder left


def test_cli_target_lambda_and_a_limit_lambda_refuses(tmp_path):
    project = write_project(tmp_path / "p", {"api/hello.py": FILES["api/hello.py"]})
    result = run_cli("build", str(project), "--no-install", "--target", "lambda")
    assert result.exit_code == 0, result.output
    assert (project / ".fnserve/output/lambda/functions/api-hello.zip").is_file()
    (project / "vercel.json").write_text(json.dumps({"functions": {"api/*.py": {"memory": 64}}}))
    result = run_cli("build", str(project), "--no-install", "--target", "lambda")
    assert result.exit_code == 2
    assert "api/hello.py: memory 64 MB is outside what AWS Lambda allows (128–10240 MB)" in result.output
    assert not (project / ".fnserve/output/lambda").exists()  # the failed render left nothing


def test_registry_and_unsupported_python(built):
    output, manifest, _ = built
    assert TARGETS["lambda"] is LambdaTarget
    from dataclasses import replace

    from fnserve.build.manifest import EnvRecord

    env = EnvRecord("k", "envs/k", "envs/k/bin/python", "envs/k/lib", "3.8.18", "/usr/bin/python3.8", (), 0)
    odd = replace(manifest, envs={"k": env}, functions=tuple(replace(f, env="k") for f in manifest.functions))
    with pytest.raises(BuildError, match=r"the project's Python is 3\.8\.18; AWS Lambda runs Python 3\.9"):
        LambdaTarget({}).render(output, odd, lambda _line: None)
    assert (output / "lambda" / "template.yaml").is_file()  # the previous rendering is intact


RUN_EVENTS = """
import json, sys
sys.path.insert(0, ".")
import fnserve_lambda
print(json.dumps([fnserve_lambda.handler(e, None) for e in json.load(sys.stdin)]))
"""


def test_edgeone_layout_zips(tmp_path):
    """examples/edgeone: a Flask mount sees the path below its prefix (root_path), the
    ``[[default]]`` catch-all gets the rest; each zip run in its own interpreter, as on Lambda."""
    import shutil
    import subprocess

    project = tmp_path / "edgeone"
    shutil.copytree(Path(__file__).parents[2] / "examples" / "edgeone", project,
                    ignore=shutil.ignore_patterns(".fnserve", "__pycache__"))
    assert run_cli("build", str(project), "--no-install", "--target", "lambda").exit_code == 0
    functions = project / ".fnserve/output/lambda/functions"
    cases = {"cloud-functions-api-flaskapp-index.zip": ("/api/flaskapp/users", 200, '"Alice"'),
             "cloud-functions-api-_default_.zip": ("/api/books/list", 404, '"path": "/api/books/list"')}
    for name, (path, status, needle) in cases.items():
        root = tmp_path / name
        with zipfile.ZipFile(functions / name) as zf:
            zf.extractall(root)
        events = [event(source, "GET", path) for source in SOURCES]
        proc = subprocess.run([sys.executable, "-c", RUN_EVENTS], cwd=root, input=json.dumps(events),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        for source, result in zip(SOURCES, json.loads(proc.stdout)):
            got_status, _, body = decode(source, result)
            assert got_status == status and needle in body.decode(), (name, source, body)


def test_a_function_over_lambdas_250_mb_is_refused(tmp_path):
    """A 300 MB (sparse) data file: exit 2 naming the function and its largest parts, no lambda/."""
    project = write_project(tmp_path / "p", {"api/hello.py": FILES["api/hello.py"]})
    with open(project / "big.bin", "wb") as f:
        f.truncate(300 * 1024 * 1024)
    result = run_cli("build", str(project), "--no-install", "--target", "lambda")
    assert result.exit_code == 2
    assert re.search(r"api/hello\.py: 300\.\d MB unzipped, over AWS Lambda's 250 MB limit for a zip package; "
                     r"largest: big\.bin 300\.0 MB, [^\n]*fnserve_lambda\.py", result.output), result.output
    assert "excludeFiles" in result.output
    assert not (project / ".fnserve/output/lambda").exists()
