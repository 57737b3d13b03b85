"""conformance/run.py itself: the checks it makes, how pending and documented cases are counted,
and one fixture end to end against a real ``fnserve dev`` on a loopback port (issue 9 item 7)."""

from __future__ import annotations

import base64
import importlib.util
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

RUN_PY = Path(__file__).resolve().parent.parent / "conformance" / "run.py"
_spec = importlib.util.spec_from_file_location("conformance_run", RUN_PY)
assert _spec is not None and _spec.loader is not None
run = importlib.util.module_from_spec(_spec)
sys.modules["conformance_run"] = run  # dataclasses resolve annotations through sys.modules
_spec.loader.exec_module(run)


def _case(expect: dict, differs: str | None = None) -> run.Case:
    return run.Case("c", "GET", "/x", {}, b"", expect, differs)


def _answer(status: int = 200, headers: list[tuple[str, str]] | None = None, body: bytes = b"",
            times: list[float] | None = None) -> run.Answer:
    return run.Answer(status, httpx.Headers(headers or []), body, times or [0.0])


def test_check_reports_each_difference_on_its_own_line() -> None:
    case = _case({"status": 200, "headers": {"set-cookie": ["a=1", "b=2"]}, "json": {"a": {"b": 1}},
                  "headers_contain": {"content-type": "json"}})
    answer = _answer(404, [("set-cookie", "a=1"), ("content-type", "text/plain")], b'{"a": {"b": 2}}')
    assert run.check(case, answer) == [
        "status: expected 200, got 404",
        "header set-cookie: expected ['a=1', 'b=2'], got ['a=1']",
        "header content-type: expected to contain 'json', got 'text/plain'",
        "json.a.b: expected 1, got 2",
    ]


def test_check_passes_binary_bodies_and_repeated_headers_in_order() -> None:
    data = bytes(range(256))
    case = _case({"status": 200, "body_b64": base64.b64encode(data).decode(),
                  "headers": {"set-cookie": ["a=1", "b=2"]}})
    assert run.check(case, _answer(200, [("set-cookie", "a=1"), ("set-cookie", "b=2")], data)) == []
    reordered = _answer(200, [("set-cookie", "b=2"), ("set-cookie", "a=1")], data)
    assert run.check(case, reordered) == ["header set-cookie: expected ['a=1', 'b=2'], got ['b=2', 'a=1']"]


def test_streamed_needs_the_body_spread_over_time() -> None:
    case = _case({"streamed": True})
    assert run.check(case, _answer(times=[1.0, 1.3, 1.6])) == []
    assert run.check(case, _answer(times=[1.0]))[0].startswith("streaming: expected the body in pieces")


def _report(runtime: str, diffs: list[str], pending: dict, differs: str | None = None) -> run.Tally:
    fixture = run.Fixture("fx", "edgeone", "null", "", (_case({}, differs),))
    tally = run.Tally()
    run.report(runtime, "dev", fixture, fixture.cases[0], diffs, pending, tally)
    return tally


def test_a_pending_case_that_fails_is_pending_and_one_that_passes_fails_the_run() -> None:
    pending = {("fx", "c"): run.Pending("fx", "c", (1,), ("dev", "start"), "")}
    tally = _report("fnserve", ["status"], pending)
    assert (tally.pending, tally.failed) == (1, 0)
    assert _report("fnserve", [], pending).failed == 1
    # pending.toml is about fnserve only; on a platform a listed case counts as usual
    assert _report("edgeone", ["status"], pending).failed == 1


def test_documented_differences_count_apart_on_the_platforms_only() -> None:
    assert _report("edgeone", ["status"], {}, differs="edgeone-head-405").differs == 1
    assert _report("fnserve", ["status"], {}, differs="edgeone-head-405").failed == 1


def test_pending_entries_must_name_a_real_case_and_an_issue_9_item(tmp_path: Path, monkeypatch) -> None:
    run.load_pending()  # the real list parses
    listed = tmp_path / "pending.toml"
    monkeypatch.setattr(run, "PENDING_FILE", listed)
    listed.write_text('[[pending]]\nproject = "vc-binary"\ncase = "a PNG written in two flushes without '
                      'Content-Length"\nitem = [1, 3]\nmodes = ["start"]\n')
    (entry,) = run.load_pending().values()
    assert (entry.items, entry.modes, entry.label) == ((1, 3), ("start",), "issue 9 item 1 + 3")
    for bad in ('project = "vc-binary"\ncase = "no such case"\nitem = 1',
                'project = "vc-binary"\ncase = "a PNG written in two flushes without Content-Length"\nitem = 9'):
        listed.write_text("[[pending]]\n" + bad + "\n")
        with pytest.raises(SystemExit):
            run.load_pending()


def test_one_fixture_end_to_end_under_fnserve_dev(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, str(RUN_PY), "--runtime", "fnserve", "--project", "vc-binary"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines()[-1] == "4 passed, 0 failed"


def test_unknown_fixture_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        run.main(["--runtime", "fnserve", "--project", "no-such-fixture"])
    assert exc.value.code == 2

