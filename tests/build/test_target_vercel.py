"""``fnserve build --target vercel``: Build Output API v3 in ``<project>/.vercel/output`` (issue 11
part 3): config.json routes, static, one ``.func`` per function with its ``.vc-config.json``,
trampoline, files and ``_vendor`` for Linux x86_64 / CPython 3.12, the fnserve shim for EdgeOne and
Lambda-style functions, the environment decision, atomic writes and the two errors (exit 2)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from buildsupport import handler, run_cli, snapshot, write_project

from fnserve.build.targets import TARGETS
from fnserve.build.targets.vercel import VERCEL_RUNTIME, VercelTarget
from fnserve.build.targets.vercel_routes import rule_routes

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def build(project: Path, *args: str) -> str:
    result = run_cli("build", str(project), "--no-install", "--target", "vercel", *args)
    assert result.exit_code == 0, result.output
    return result.output


def pyre(src: str) -> re.Pattern[str]:
    """A config.json ``src`` (PCRE) as a Python regex, to check what it matches."""
    return re.compile(re.sub(r"\(\?<([A-Za-z_]\w*)>", r"(?P<\1>", src))


def test_vercel_is_a_registered_target():
    assert TARGETS["vercel"] is VercelTarget


def test_showcase_renders_build_output_api_v3(tmp_path):
    project = tmp_path / "showcase"
    shutil.copytree(EXAMPLES / "showcase", project)
    before = snapshot(project)
    output = build(project)
    assert "target vercel:" in output and "vercel deploy --prebuilt" in output
    out = project / ".vercel" / "output"
    config = json.loads((out / "config.json").read_text())
    assert config["version"] == 3
    routes = config["routes"]
    handles = [r["handle"] for r in routes if "handle" in r]
    assert handles == ["filesystem", "miss", "rewrite"]
    phase = {h: routes.index({"handle": h}) for h in handles}
    # main phase: the vercel.json redirect; filesystem phase: the rewrite
    assert routes[0] == {"src": r"^/old\-hello$", "headers": {"Location": "/hello"}, "status": 308}
    assert routes[phase["filesystem"] + 1] == {"src": "^/hello$", "dest": "/api/hello", "check": True}
    miss = routes[phase["miss"] + 1: phase["rewrite"]]
    assert {"src": r"^/api/hello\.py/?$", "dest": "/api/hello", "check": True} in miss
    rewrite = routes[phase["rewrite"] + 1:]
    by_dest = {r["dest"]: r for r in rewrite}
    users = by_dest["/api/users/[id]?id=$1"]
    assert pyre(users["src"]).match("/api/users/42").group(1) == "42"
    assert not pyre(users["src"]).match("/api/users/4/2")
    files = by_dest["/api/files/[...path]?...path=$1"]
    assert pyre(files["src"]).match("/api/files/a/b/c").group(1) == "a/b/c"  # more than one segment
    assert not pyre(files["src"]).match("/api/files")
    flask = by_dest["/api/flask_app"]
    assert pyre(flask["src"]).match("/api/flask_app/hello/Ada") and not pyre(flask["src"]).match("/api/flask_apps")
    assert "transforms" not in flask  # Vercel layout: the app sees the original path
    assert sorted(p.name for p in (out / "static").iterdir()) == ["index.html", "style.css"]
    funcs = sorted(p.relative_to(out / "functions").as_posix() for p in (out / "functions").rglob("*.func"))
    assert funcs == ["api/asgi_raw.func", "api/fastapi_app.func", "api/files/[...path].func", "api/flask_app.func",
                     "api/hello.func", "api/users/[id].func"]
    hello = out / "functions" / "api" / "hello.func"
    vc = json.loads((hello / ".vc-config.json").read_text())
    assert vc == {"runtime": "python3.12", "handler": "vc__handler__python.vc_handler", "memory": 1024,
                  "maxDuration": 300, "environment": {"PYTHONPATH": "_vendor", "PYTHONDONTWRITEBYTECODE": "1"},
                  "supportsResponseStreaming": True, "architecture": "x86_64"}
    trampoline = (hello / "vc__handler__python.py").read_text()
    assert "'api.hello'" in trampoline and "'api/hello.py'" in trampoline and "'handler'" in trampoline
    assert "from vercel_runtime.vc_init import vc_handler" in trampoline
    assert (hello / "api" / "hello.py").read_text() == (EXAMPLES / "showcase" / "api" / "hello.py").read_text()
    assert (hello / "api" / "_lib" / "greet.py").is_file() and not (hello / "public").exists()
    assert not (hello / "vc__fnserve__shim.py").exists()  # Vercel's launcher serves it as it is
    vendor = hello / "_vendor"
    version = VERCEL_RUNTIME.split("==")[1]
    assert (vendor / "vercel_runtime" / "vc_init.py").is_file()
    assert (vendor / f"vercel_runtime-{version}.dist-info").is_dir()
    assert (vendor / "flask").is_dir() and (vendor / "fastapi").is_dir()
    native = [p.name for p in (vendor / "pydantic_core").glob("*.so")]
    assert native and all("cpython-312-x86_64-linux-gnu" in name for name in native)  # the target, not this Python
    assert {k: v for k, v in snapshot(project).items() if not k.startswith(".vercel/")} == before
    assert not list((project / ".vercel").glob(".output.*"))


def test_edgeone_and_lambda_functions_get_the_fnserve_shim(tmp_path):
    project = tmp_path / "edgeone"
    shutil.copytree(EXAMPLES / "edgeone", project)
    write_project(project, {"cloud-functions/api/lam/[id].py": (
        "import json\n\ndef handler(event, context):\n"
        "    return {'statusCode': 200, 'body': json.dumps(event.get('pathParameters'))}\n")})
    build(project)
    out = project / ".vercel" / "output"
    funcs = sorted(p.relative_to(out / "functions").as_posix() for p in (out / "functions").rglob("*.func"))
    assert funcs == ["api/[[default]].func", "api/flaskapp/index.func", "api/hello.func", "api/lam/[id].func",
                     "api/users/[id].func"]
    for func in funcs:
        folder = out / "functions" / func
        trampoline = (folder / "vc__handler__python.py").read_text()
        assert "'vc__fnserve__shim'" in trampoline and "'app'" in trampoline
        assert (folder / "_fnserve_runtime" / "loader.py").is_file()
        assert (folder / "cloud-functions").is_dir()
    shim = (out / "functions" / "api" / "flaskapp" / "index.func" / "vc__fnserve__shim.py").read_text()
    assert "'/api/flaskapp'" in shim  # the EdgeOne mount prefix becomes root_path / SCRIPT_NAME
    routes = json.loads((out / "config.json").read_text())["routes"]
    dests = [r.get("dest") for r in routes]
    assert "/api/users/[id]" in dests and "/api/flaskapp/index" in dests  # EdgeOne: no params in the query
    catch_all = next(r for r in routes if r.get("dest") == "/api/[[default]]")
    # EdgeOne [[default]] matches zero or more segments (SPEC §3.1): /api itself too
    assert pyre(catch_all["src"]).match("/api/books/list") and pyre(catch_all["src"]).match("/api")
    # priority order: /api/lam/[id] and /api/users/[id] before the catch-all
    assert dests.index("/api/lam/[id]") < dests.index("/api/[[default]]")


def test_environment_keeps_local_secrets_out(tmp_path):
    project = write_project(tmp_path / "p", {
        "api/a.py": handler("'a'"),
        "vercel.json": json.dumps({"env": {"FROM_JSON": "1", "OVERRIDDEN": "json"}}),
        ".env": "FROM_DOTENV=2\nOVERRIDDEN=dotenv\n",
        ".env.production": "STAGE=production\n",
        ".env.local": "API_SECRET=hunter2\n",
        "requirements.txt": "",
    })
    output = build(project)
    func = project / ".vercel" / "output" / "functions" / "api" / "a.func"
    env = json.loads((func / ".vc-config.json").read_text())["environment"]
    assert env["FROM_JSON"] == "1" and env["FROM_DOTENV"] == "2" and env["OVERRIDDEN"] == "dotenv"
    assert env["STAGE"] == "production" and "API_SECRET" not in env
    assert ".env.local is not deployed" in output and "API_SECRET" in output and "hunter2" not in output
    assert not [p for p in func.iterdir() if p.name.startswith(".env")]
    assert "hunter2" not in "".join(p.read_text(errors="replace") for p in func.rglob("*") if p.is_file()
                                    and "_vendor" not in p.parts)


def test_vercel_json_rules_become_routes_in_vercels_order():
    main, rewrites = rule_routes({
        "cleanUrls": True, "trailingSlash": False,
        "redirects": [{"source": "/old/:path*", "destination": "/new/:path*", "permanent": False},
                      {"source": "/go", "destination": "https://example.com/x", "statusCode": 301,
                       "has": [{"type": "query", "key": "q"}]}],
        "headers": [{"source": "/api/(.*)", "headers": [{"key": "X-Api", "value": "yes"}]}],
        "rewrites": [{"source": "/blog/:slug", "destination": "/api/post"},
                     {"source": "/u/:id", "destination": "/api/users/:id"}],
    })
    assert [r.get("status") for r in main[:3]] == [308, 308, 308]  # cleanUrls (2), trailingSlash (1)
    old = main[3]
    assert old["status"] == 307 and old["headers"] == {"Location": "/new/$1"}
    assert pyre(old["src"]).match("/old/a/b") and pyre(old["src"]).match("/old")
    go = main[4]
    assert go["status"] == 301 and go["headers"]["Location"] == "https://example.com/x" and go["has"]
    header = main[5]
    assert header == {"src": header["src"], "headers": {"X-Api": "yes"}, "continue": True}
    assert pyre(header["src"]).match("/api/anything")
    blog, user = rewrites
    assert blog["dest"] == "/api/post?slug=$1" and blog["check"] is True  # unused params go to the query
    assert user["dest"] == "/api/users/$1" and pyre(user["src"]).match("/u/7").group(1) == "7"


def test_output_is_replaced_atomically_and_nothing_else_is_touched(tmp_path):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'"), "requirements.txt": ""})
    write_project(project, {".vercel/project.json": '{"projectId": "x"}', ".vercel/output/stale.txt": "old"})
    build(project)
    assert (project / ".vercel" / "project.json").read_text() == '{"projectId": "x"}'
    assert not (project / ".vercel" / "output" / "stale.txt").exists()
    assert (project / ".vercel" / "output" / "functions" / "api" / "a.func" / ".vc-config.json").is_file()
    assert sorted(p.name for p in (project / ".vercel").iterdir()) == ["output", "project.json"]


def test_a_dependency_without_a_linux_wheel_is_an_error_naming_it(tmp_path):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'"), "requirements.txt": "pywin32==306\n"})
    write_project(project, {".vercel/output/config.json": '{"version": 3}'})
    result = run_cli("build", str(project), "--no-install", "--target", "vercel")
    assert result.exit_code == 2
    assert "pywin32 cannot be installed for Linux x86_64 / CPython 3.12" in result.output
    assert (project / ".vercel" / "output" / "config.json").read_text() == '{"version": 3}'  # previous kept
    assert sorted(p.name for p in (project / ".vercel").iterdir()) == ["output"]  # no temporary folder left


def test_a_function_over_250_mb_is_an_error_naming_its_largest_parts(tmp_path):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'"), "requirements.txt": ""})
    (project / "data").mkdir()
    subprocess.run(["truncate", "-s", "300M", str(project / "data" / "big.bin")], check=True)
    result = run_cli("build", str(project), "--no-install", "--target", "vercel")
    assert result.exit_code == 2
    assert re.search(r"api/a\.py is 30\d\.\d MB, over Vercel's 250\.0 MB function limit", result.output)
    assert "file data/big.bin (300.0 MB)" in result.output and "excludeFiles" in result.output
    assert not (project / ".vercel").exists()  # the project is left as it was


@pytest.mark.parametrize("name", [".env", ".env.local", ".env.production.local"])
def test_env_files_never_enter_a_func(name):
    from fnserve.build.targets.vercel_func import is_secret_file

    assert is_secret_file(name) and is_secret_file("sub/" + name) and not is_secret_file("env.py")


def test_an_unchanged_build_renders_a_missing_vercel_output_again(tmp_path):
    project = write_project(tmp_path / "p", {"api/a.py": handler("'a'"), "requirements.txt": ""})
    build(project)
    config = project / ".vercel" / "output" / "config.json"
    stamp = config.stat().st_mtime_ns
    output = build(project)
    assert "up to date" in output and "target vercel:" not in output and config.stat().st_mtime_ns == stamp
    shutil.rmtree(project / ".vercel" / "output")
    output = build(project)
    assert "up to date" in output and "target vercel:" in output and config.is_file()


def test_a_build_with_its_env_vendors_the_envs_requirements(tmp_path):
    project = write_project(tmp_path / "p", {
        "requirements.txt": "itsdangerous\n",
        "api/sign.py": handler("itsdangerous.Signer('k').sign(b'v').decode()", "import itsdangerous\n"),
    })
    result = run_cli("build", str(project), "--target", "vercel")
    assert result.exit_code == 0, result.output
    manifest = json.loads((project / ".fnserve" / "output" / "manifest.json").read_text())
    assert manifest["functions"][0]["env"] in manifest["envs"]
    vendor = project / ".vercel" / "output" / "functions" / "api" / "sign.func" / "_vendor"
    assert (vendor / "itsdangerous" / "signer.py").is_file() and (vendor / "vercel_runtime").is_dir()
    assert not (vendor / ".lock").exists()


def test_function_limits_become_memory_and_max_duration(tmp_path):
    project = write_project(tmp_path / "p", {
        "api/a.py": handler("'a'"), "api/b.py": handler("'b'"), "requirements.txt": "",
        "vercel.json": json.dumps({"functions": {"api/a.py": {"maxDuration": 7, "memory": 512}}}),
    })
    build(project)
    functions = project / ".vercel" / "output" / "functions" / "api"
    a = json.loads((functions / "a.func" / ".vc-config.json").read_text())
    b = json.loads((functions / "b.func" / ".vc-config.json").read_text())
    assert (a["maxDuration"], a["memory"]) == (7, 512) and (b["maxDuration"], b["memory"]) == (300, 1024)
    assert "launcherType" not in a
