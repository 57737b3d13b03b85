"""Errors carry their HTTP status (issue 12 item 5): every ``WorkerError`` has a ``status_code``,
and the front app renders what the dispatcher raises as is (status, message, dev detail,
``Retry-After``), over a real loopback server; raised after the response started, the client
connection is dropped."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from devserver import serve_app

from fnserve import errors as fe
from fnserve.project.types import Entry, EntryKind, Function, Layout, Route, RouteMatch
from fnserve.server.app import FrontApp, Site

LOAD_ERROR = SimpleNamespace(message="NameError: name 'x' is not defined\nmore", traceback="Traceback (most recent call last):\n  boom",
                             hint="fix api/x.py line 3")
RAISED = {
    "/load": fe.FunctionLoadFailed("api/x.py", LOAD_ERROR),
    "/failed": fe.FunctionFailed("api/x.py", "ValueError: no", "Traceback: app"),
    "/crash": fe.WorkerCrashed("api/x.py", exit_status=-9),
    "/memory": fe.MemoryExceeded("api/x.py", 256, 300.0),
    "/busy": fe.Overloaded("api/x.py", 10, retry_after=3),
    "/start": fe.WorkerStartTimeout("api/x.py", 30.0),
    "/slow": fe.DurationExceeded("api/x.py", 1.5),
    "/gone": fe.WorkerError("no function 'api/x.py' is known to the supervisor", "call update()"),
}
EXPECTED = {  # path: (status, code, dev detail)
    "/load": (500, "FUNCTION_INVOCATION_FAILED", LOAD_ERROR.traceback),
    "/failed": (500, "FUNCTION_INVOCATION_FAILED", "Traceback: app"),
    "/crash": (502, "NO_RESPONSE_FROM_FUNCTION", RAISED["/crash"].hint),
    "/memory": (502, "NO_RESPONSE_FROM_FUNCTION", RAISED["/memory"].hint),
    "/busy": (503, "FUNCTION_THROTTLED", RAISED["/busy"].hint),
    "/start": (503, "FUNCTION_THROTTLED", RAISED["/start"].hint),
    "/slow": (504, "FUNCTION_INVOCATION_TIMEOUT", RAISED["/slow"].hint),
    "/gone": (503, "FUNCTION_THROTTLED", "call update()"),
}
FN = Function("api/x.py", Path("/p/api/x.py"), "api.x", Layout.VERCEL, Entry(EntryKind.APP, "app", 1), (Path("/p"),))


class _Routes:
    """Every path is a route of ``FN`` (a mount at ``/``)."""

    def match(self, path: str) -> RouteMatch:
        return RouteMatch(Route("/", (), FN, mount=True), {}, "", path)


async def dispatch(function, scope, receive, send):
    if scope["path"] == "/mid":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"part", "more_body": True})
        raise fe.WorkerCrashed(function.id, response_started=True)
    raise RAISED[scope["path"]]


@pytest.fixture(scope="module", params=[True, False], ids=["dev", "start"])
def served(request):
    with serve_app(FrontApp(Site(routes=_Routes()), dispatch, dev=request.param)) as url:
        yield url, request.param


def test_every_worker_error_has_its_status():
    for cls in (fe.WorkerError, fe.WorkerCrashed, fe.MemoryExceeded, fe.WorkerStartTimeout, fe.Overloaded,
                fe.DurationExceeded, fe.FunctionLoadFailed, fe.FunctionFailed):
        assert isinstance(cls.status_code, int) and 500 <= cls.status_code <= 504, cls
    assert fe.FnserveError.status_code is None and fe.ConfigError.status_code is None
    assert RAISED["/busy"].headers == [(b"retry-after", b"3")]
    assert RAISED["/load"].message == "api/x.py failed to load: NameError: name 'x' is not defined"
    assert RAISED["/crash"].exit_status == -9 and "exit status -9" in RAISED["/crash"].message


@pytest.mark.parametrize("path", sorted(RAISED))
def test_front_app_renders_the_raised_error_as_is(served, path):
    url, dev = served
    r = httpx.get(url + path)
    status, code, detail = EXPECTED[path]
    error = r.json()["error"]
    # production (issue 10 item 12): the function's own text (exception, load error) only in dev
    message = RAISED[path].message if dev else RAISED[path].public_message
    assert (r.status_code, error["code"], error["message"]) == (status, code, message)
    assert error.get("detail") == (detail if dev else None)
    assert r.headers.get("retry-after") == ("3" if path == "/busy" else None)


def test_error_after_the_response_started_drops_the_connection(served):
    url, _ = served
    with pytest.raises(httpx.HTTPError):
        httpx.get(url + "/mid")
