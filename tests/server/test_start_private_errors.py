"""``fnserve start`` never returns a function's exception text (issue 10 item 12): the body says
the function failed, with the request id, in Vercel's code vocabulary; the text and the
traceback go to the log. ``fnserve dev`` keeps showing them. Real server subprocesses."""

from __future__ import annotations

from pathlib import Path

import httpx
from devserver import DevServer
from startserver import StartServer

SECRET = "postgres://admin:s3cret@db/prod"


def test_start_hides_the_exception_text_and_logs_it(tmp_path: Path) -> None:
    flags = tmp_path / "flags"
    flags.mkdir()
    (flags / "down").write_text("")
    srv = StartServer("start_faults", tmp_path, "--load-retry", "0", env={"FAULTS_FLAGS": str(flags), "FNSERVE_ENV_PASSTHROUGH": "FAULTS_FLAGS"})
    srv.start()
    try:
        r = httpx.get(srv.url + "/api/boom", headers={"x-request-id": "req-1234"}, timeout=30)
        assert r.status_code == 500
        assert SECRET not in r.text and "ValueError" not in r.text and "Traceback" not in r.text
        assert r.json()["error"] == {
            "code": "FUNCTION_INVOCATION_FAILED", "request_id": "req-1234",
            "message": "the function failed while handling the request; the server log has the details"}
        assert r.headers["x-fnserve-request-id"] == "req-1234"
        srv.wait_for_line(r"ValueError: " + SECRET.replace("/", r"\/").replace(".", r"\."))  # the log has it
        srv.wait_for_line(r"Traceback")
        r = httpx.get(srv.url + "/api/flaky", timeout=30)  # a load failure: its message stays in the log
        assert r.status_code == 500 and "database unreachable" not in r.text
        assert r.json()["error"]["code"] == "FUNCTION_INVOCATION_FAILED" and r.json()["error"]["request_id"]
        srv.wait_for_line(r"database unreachable")
    finally:
        srv.stop()


def test_an_app_s_own_json_500_is_left_alone(tmp_path: Path) -> None:
    import asyncio

    from fnserve.server.observe import Observed

    async def app(scope, receive, send):
        body = b'{"error": {"code": "mine", "message": "x"}}'
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.disconnect"}

    scope = {"type": "http", "path": "/", "headers": [], "method": "GET"}
    asyncio.run(Observed(app, None, public_errors=True)(scope, receive, send))
    assert sent[0]["status"] == 500 and sent[1]["body"] == b'{"error": {"code": "mine", "message": "x"}}'


def test_dev_still_shows_the_exception(tmp_path: Path) -> None:
    srv = DevServer("start_faults", tmp_path)
    srv.start()
    try:
        r = httpx.get(srv.url + "/api/boom", timeout=30)
        assert r.status_code == 500 and SECRET in r.json()["error"]["message"]
        assert r.json()["error"]["code"] == "FUNCTION_INVOCATION_FAILED"  # one vocabulary in dev too
    finally:
        srv.stop()
