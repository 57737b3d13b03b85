"""Every ``.func`` of ``fnserve build --target vercel`` run the way the platform runs it: Vercel's
own launcher (PyPI ``vercel-runtime``, from the ``.func``'s ``_vendor``) under CPython 3.12, in its
IPC mode (its HTTP server, announced over ``VERCEL_IPC_PATH``) and in its Lambda-event mode
(``vc_handler(event, context)``). Each request goes to the function the generated ``config.json``
routes it to, with the target Vercel gives it; status and body must equal what ``fnserve start``
answers for the same request on the project folder (issue 11 acceptance)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest
from buildsupport import run_cli, serving, write_project
from vercelsupport import IpcFunction, invoke_lambda, python312, resolve

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PY312 = python312()
pytestmark = pytest.mark.skipif(PY312 is None, reason="no CPython 3.12 here (the .func _vendor targets 3.12)")

Call = tuple[str, str, bytes]
SHOWCASE: list[Call] = [
    ("GET", "/api/hello", b""), ("GET", "/api/hello?name=Ada", b""), ("POST", "/api/hello", b'{"name": "Bo"}'),
    ("POST", "/api/hello", b"not json"), ("GET", "/hello", b""), ("GET", "/api/hello.py", b""),
    ("GET", "/api/users/7", b""), ("GET", "/api/users/7?y=2", b""), ("GET", "/api/flask_app", b""),
    ("GET", "/api/flask_app/hello/Cy", b""), ("GET", "/api/fastapi_app/items", b""),
    ("GET", "/api/fastapi_app/items/2", b""), ("GET", "/api/asgi_raw/x/y", b""), ("POST", "/api/asgi_raw", b"z"),
    ("GET", "/api/files/a/b/c", b""), ("GET", "/api/files/one", b""),
]
EDGEONE: list[Call] = [
    ("GET", "/api/hello", b""), ("GET", "/api/users/3", b""), ("DELETE", "/api/users/3", b""),
    ("GET", "/api/flaskapp/users", b""), ("POST", "/api/flaskapp/users", b'{"name": "Di"}'),
    ("GET", "/api/anything/else", b""), ("GET", "/api/lam/9?x=1", b""), ("POST", "/api/lam/9", b"payload"),
]
LAMBDA = (
    "import json\n\n"
    "def handler(event, context):\n"
    "    body = {'path': event['rawPath'], 'query': event['rawQueryString'], 'params': event.get('pathParameters'),\n"
    "            'method': event['requestContext']['http']['method'], 'body': event.get('body'),\n"
    "            'remaining': context.get_remaining_time_in_millis() > 0}\n"
    "    return {'statusCode': 202, 'headers': {'content-type': 'application/json'}, 'body': json.dumps(body)}\n"
)


def render(tmp_path: Path, example: str, extra: dict[str, str], calls: list[Call]) -> tuple[Path, list[tuple[int, bytes]]]:
    """Copy ``example`` (+ ``extra`` files), record ``fnserve start``'s answers to ``calls``, then
    build it with ``--target vercel``; returns the project and the expected (status, body) list."""
    project = tmp_path / example
    shutil.copytree(EXAMPLES / example, project)
    write_project(project, extra)
    expected = []
    with serving(str(project), "--no-install") as url:
        import httpx

        with httpx.Client(base_url=url, timeout=30) as client:
            for method, target, body in calls:
                resp = client.request(method, target, content=body or None)
                expected.append((resp.status_code, resp.content))
    result = run_cli("build", str(project), "--no-install", "--target", "vercel")
    assert result.exit_code == 0, result.output
    return project, expected


def routed(project: Path, calls: list[Call]) -> list[tuple[str, str]]:
    out = project / ".vercel" / "output"
    config = json.loads((out / "config.json").read_text())
    names = {p.relative_to(out / "functions").as_posix()[: -len(".func")] for p in (out / "functions").rglob("*.func")}
    found = []
    for method, target, _body in calls:
        hit = resolve(config, names, method, target)
        assert hit is not None, f"{method} {target}: config.json routes it to no function"
        found.append(hit)
    return found


def check_both_modes(project: Path, calls: list[Call], expected: list[tuple[int, bytes]]) -> set[str]:
    """Run each function in IPC mode and in Lambda mode; compare with ``expected``; returns the
    functions exercised."""
    assert PY312 is not None
    functions = project / ".vercel" / "output" / "functions"
    plan = routed(project, calls)
    for name in sorted({name for name, _t in plan}):
        func = functions / f"{name}.func"
        mine = [(i, calls[i][0], target, calls[i][2]) for i, (n, target) in enumerate(plan) if n == name]
        instance = IpcFunction(PY312, func)
        try:
            for n, (i, method, target, body) in enumerate(mine):
                resp = instance.request(method, target, body)
                assert (resp.status_code, resp.content) == expected[i], f"IPC {name}: {method} {target}"
                if n == 0:  # Vercel's launcher answered: its cold-start timing is on the first response
                    assert "import-fn" in resp.headers.get("x-vercel-internal-timing", "")
            deadline = time.monotonic() + 10  # the launcher's IPC messages may trail the responses
            while [m["type"] for m in instance.messages].count("end") < len(mine) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert [m["type"] for m in instance.messages].count("handler-started") == len(mine)
        finally:
            instance.close()
        answers = invoke_lambda(PY312, func, [(m, t, b) for _i, m, t, b in mine])
        for (i, method, target, _b), answer in zip(mine, answers):
            assert answer == expected[i], f"Lambda mode {name}: {method} {target}"
    return {name for name, _t in plan}


def test_showcase_functions_under_vercels_launcher(tmp_path):
    project, expected = render(tmp_path, "showcase", {}, SHOWCASE)
    assert [status for status, _b in expected].count(200) >= 12
    plan = dict(zip([f"{m} {t}" for m, t, _b in SHOWCASE], routed(project, SHOWCASE)))
    assert plan["GET /api/users/7?y=2"] == ("api/users/[id]", "/api/users/7?y=2&id=7")  # Vercel's query merge
    assert plan["GET /hello"] == ("api/hello", "/hello")  # a rewrite: the function sees the original URL
    assert plan["GET /api/files/a/b/c"] == ("api/files/[...path]", "/api/files/a/b/c?...path=a%2Fb%2Fc")
    exercised = check_both_modes(project, SHOWCASE, expected)
    assert exercised == {"api/hello", "api/users/[id]", "api/flask_app", "api/fastapi_app", "api/asgi_raw",
                         "api/files/[...path]"}


def test_edgeone_and_lambda_functions_through_the_shim_under_vercels_launcher(tmp_path):
    project, expected = render(tmp_path, "edgeone", {"cloud-functions/api/lam/[id].py": LAMBDA}, EDGEONE)
    lam = json.loads(expected[6][1])
    assert lam["params"] == {"id": "9"} and lam["query"] == "x=1" and lam["path"] == "/api/lam/9"
    assert json.loads(expected[3][1])["users"]  # /api/flaskapp/users reached Flask's /users (mount prefix)
    exercised = check_both_modes(project, EDGEONE, expected)
    assert exercised == {"api/hello", "api/users/[id]", "api/flaskapp/index", "api/[[default]]", "api/lam/[id]"}
