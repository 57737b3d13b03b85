"""The dashboard in memory (issue 13 item 2): the event feed (ring buffers, subscribers, the
request path's single test), the logging handler, the state document and ``DashboardApp`` fed
ASGI messages."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from fnserve.project import load_project
from fnserve.runtime.failures import LoadError
from fnserve.server.dashboard import feed as feed_module
from fnserve.server.dashboard.feed import DashboardFeed, FeedHandler, Subscriber
from fnserve.server.dashboard.view import StateSource, build_state, deps_panel, function_state, process_facts
from fnserve.server.dashboard.web import DashboardApp
from fnserve.server.observe import CURRENT, AccessLog, RequestInfo

PROJECT = Path(__file__).parent.parent / "projects" / "dashboard"


def scope(path: str = "/api/hello", query: bytes = b"", method: str = "GET") -> dict:
    return {"type": "http", "method": method, "path": path, "query_string": query, "headers": []}


def run(coro):
    return asyncio.run(coro)


# ---------------------------------------------------------------------------------------- feed
def test_no_page_open_records_nothing_on_the_request_path():
    feed = DashboardFeed()
    calls = []
    feed.request = lambda *a: calls.append(a)  # type: ignore[method-assign]
    hook = AccessLog(feed=feed)
    assert feed.listening is False
    hook(scope(), 200, time.perf_counter(), "api/hello.py")
    assert calls == [] and list(feed.requests) == [] and feed.samples == {}


def test_a_subscriber_gets_each_request_with_its_id_pid_and_cold():
    async def main():
        feed = DashboardFeed()
        sub = feed.subscribe()
        assert feed.listening
        info = RequestInfo("abc123")
        info.instance, info.cold = 4242, True
        CURRENT.set(info)
        AccessLog(feed=feed)(scope("/api/hello", b"x=1"), 201, time.perf_counter() - 0.005, "api/hello.py")
        chunks = sub.take()
        feed.unsubscribe(sub)
        return feed, chunks

    feed, chunks = run(main())
    assert not feed.listening
    assert len(chunks) == 1
    head, data = chunks[0].decode().split("data: ")
    assert head.startswith("id: 1\nevent: request\n")
    event = json.loads(data)
    assert event["path"] == "/api/hello?x=1" and event["status"] == 201 and event["function"] == "api/hello.py"
    assert event["id"] == "abc123" and event["pid"] == 4242 and event["cold"] is True and event["ms"] >= 5
    assert list(feed.requests) == [event]
    assert [ms for _, ms in feed.samples["api/hello.py"]] == [pytest.approx(event["ms"], abs=0.001)]


def test_a_slow_subscriber_is_dropped_not_buffered_without_bound():
    async def main():
        feed = DashboardFeed()
        slow = feed.subscribe(limit=5)
        fast = feed.subscribe(limit=100)
        for i in range(8):
            feed.request(scope(f"/r{i}"), 200, 0.001, "-", None, None, None)
        return slow, fast

    slow, fast = run(main())
    assert slow.dropped and len(slow.items) == 0 and slow.wake.is_set()
    assert not fast.dropped and len(fast.take()) == 8


def test_ring_buffers_are_bounded(monkeypatch):
    feed = DashboardFeed()
    for i in range(feed_module.OUTPUT_KEPT + 50):
        feed.output_line("api/x.py", 1, "stdout", f"line {i}", time.time())
    assert len(feed.output) == feed_module.OUTPUT_KEPT
    assert feed.output[-1]["line"] == f"line {feed_module.OUTPUT_KEPT + 49}"
    for i in range(feed_module.MESSAGES_KEPT + 5):
        feed.message(logging.INFO, "fnserve.dev", f"m{i}", time.time())
    assert len(feed.messages) == feed_module.MESSAGES_KEPT


def test_replay_gives_the_kept_events_after_an_id_in_order():
    async def main():
        feed = DashboardFeed()
        sub = feed.subscribe()
        feed.message(logging.INFO, "fnserve.dev", "first", 1.0)
        feed.request(scope("/a"), 200, 0.001, "-", None, None, None)
        feed.output_line("api/x.py", 7, "stderr", "oops", 2.0)
        feed.unsubscribe(sub)
        return feed

    feed = run(main())
    everything = [c.decode() for c in feed.replay(0)]
    assert [c.split("\n")[1] for c in everything] == ["event: message", "event: request", "event: output"]
    after_first = [c.decode() for c in feed.replay(1)]
    assert len(after_first) == 2 and after_first[0].startswith("id: 2\n")
    assert feed.replay(3) == []


def test_latency_buckets_give_p50_and_p95_over_the_window():
    now = 1_000_000.0
    feed = DashboardFeed(clock=lambda: now)
    samples = feed.samples.setdefault("api/x.py", __import__("collections").deque())
    samples.append((now - feed_module.WINDOW - 1, 999.0))  # too old: dropped
    for i in range(1, 101):  # 1..100 ms in one bucket
        samples.append((now - 2, float(i)))
    samples.append((now - 30, 7.0))
    series = feed.latency("api/x.py")
    assert len(series) == 2
    older, newer = series
    assert older[1:] == [7.0, 7.0, 1]
    assert newer[0] == (now - 2) - (now - 2) % feed_module.BUCKET
    assert newer[1:] == [50.0, 95.0, 100]
    assert len(samples) == 101  # the sample past the window is gone
    assert feed.latency("api/unknown.py") == []


def test_handler_sorts_function_output_messages_and_function_events():
    feed = DashboardFeed()
    handler = FeedHandler(feed)
    flog = logging.getLogger("fnserve.function.api/x")
    out = flog.makeRecord(flog.name, logging.INFO, __file__, 0, "%s", ("printed",), None,
                          extra={"function": "api/x.py", "pid": 12, "stream": "stderr"})
    handler.handle(out)
    sup = logging.getLogger("fnserve.supervisor")
    handler.handle(sup.makeRecord(sup.name, logging.WARNING, __file__, 0, "%s: worker %s exited with status %d",
                                  ("api/x.py", 12, 3), None))
    handler.handle(sup.makeRecord(sup.name, logging.INFO, __file__, 0, "no function here", (), None))
    access = logging.getLogger("fnserve.access")
    handler.handle(access.makeRecord(access.name, logging.INFO, __file__, 0, "GET / 200", (), None))
    assert [(o["function"], o["pid"], o["stream"], o["line"]) for o in feed.output] == [("api/x.py", 12, "stderr", "printed")]
    assert [(m["level"], m["msg"]) for m in feed.messages] == [
        ("warning", "api/x.py: worker 12 exited with status 3"), ("info", "no function here")]
    assert feed.function_events["api/x.py"]["level"] == "warning"
    assert list(feed.function_events) == ["api/x.py"]


def test_lines_logged_from_another_thread_reach_the_page_on_the_loop():
    async def main():
        feed = DashboardFeed()
        sub = feed.subscribe()
        thread = threading.Thread(target=feed.output_line, args=("api/x.py", 1, "stdout", "from a thread", 1.0))
        thread.start()
        thread.join()
        await asyncio.wait_for(sub.wake.wait(), 2)
        return sub.take()

    chunks = run(main())
    assert len(chunks) == 1 and b"from a thread" in chunks[0]


# ---------------------------------------------------------------------------------------- state
def test_function_states():
    ready = {"instances": [{"pid": 1, "state": "ready"}], "starting": 0, "spawns": 1}
    assert function_state(None)[0] == "not started"
    assert function_state({"instances": [], "starting": 0, "spawns": 0})[0] == "not started"
    assert function_state(ready) == ("ready", "1 instance ready")
    assert function_state({"instances": [], "starting": 1, "spawns": 1})[0] == "loading"
    error = LoadError("api/x.py: importing the module raised KeyError", file="api/x.py", traceback="Traceback...")
    assert function_state({"instances": [], "starting": 0, "load_error": error.message}, load_error=error) == (
        "load error", error.message)
    assert function_state(None, static_error="api/x.py: invalid syntax (line 3)") == (
        "load error", "api/x.py: invalid syntax (line 3)")
    crash = {"t": 1.0, "level": "warning", "msg": "api/x.py: worker 1 exited with status 3"}
    assert function_state({"instances": [], "starting": 0, "spawns": 1}, last_event=crash) == ("crashed", crash["msg"])
    assert function_state(ready, last_event=crash)[0] == "ready"  # a new instance replaced it
    quiet = {"t": 1.0, "level": "info", "msg": "api/x.py: stopping idle worker 1"}
    assert function_state({"instances": [], "starting": 0, "spawns": 1}, last_event=quiet)[0] == "not started"
    assert function_state(ready, hold=(("requests",), None)) == ("installing", "installing requests")
    assert function_state(ready, hold=((), "uv failed"))[0] == "dependencies failed"


def test_state_document_of_a_project():
    project = load_project(PROJECT)
    feed = DashboardFeed()
    error = LoadError("api/broken.py: importing the module raised KeyError: 'timeout'", file="api/broken.py",
                      traceback="Traceback (most recent call last):\nKeyError: 'timeout'\n", hint="fix it")
    status = {
        "api/hello.py": {"instances": [{"pid": os.getpid(), "state": "ready", "inflight": 0, "ready_ms": 12.345}],
                         "starting": 0, "queued": 0, "spawns": 1, "cold_starts": 1, "load_error": None},
        "api/broken.py": {"instances": [], "starting": 0, "queued": 0, "spawns": 1, "cold_starts": 0,
                          "load_error": error.message},
        "api/items.py": {"instances": [], "starting": 1, "queued": 2, "spawns": 1, "cold_starts": 0, "load_error": None},
    }
    feed.samples["api/hello.py"] = __import__("collections").deque([(time.time(), 3.0)])
    source = StateSource(project=lambda: project, status=lambda: status,
                         load_error=lambda fid: error if fid == "api/broken.py" else None)
    state = json.loads(json.dumps(build_state(source, feed)))  # JSON-able
    assert state["server"]["command"] == "dev" and state["server"]["root"] == str(PROJECT)
    assert {"pattern": "/api/hello", "methods": ["GET", "HEAD", "OPTIONS"], "kind": "handler",
            "file": "api/hello.py", "match": "exact"} in state["routes"]
    by_id = {f["id"]: f for f in state["functions"]}
    assert set(by_id) == {"api/broken.py", "api/crash.py", "api/hello.py", "api/items.py"}
    hello = by_id["api/hello.py"]
    assert hello["state"] == "ready" and hello["route"] == "/api/hello" and hello["kind"] == "handler"
    [inst] = hello["instances"]
    assert inst["pid"] == os.getpid() and inst["ready_ms"] == 12.3 and inst["rss_mb"] > 1 and inst["uptime_s"] >= 0
    assert hello["latency"][0][1:] == [3.0, 3.0, 1]
    broken = by_id["api/broken.py"]
    assert broken["state"] == "load error"
    assert broken["error"] == {"message": error.message, "traceback": error.traceback, "hint": "fix it"}
    assert by_id["api/items.py"]["state"] == "loading" and by_id["api/items.py"]["queued"] == 2
    assert by_id["api/crash.py"]["state"] == "not started" and by_id["api/crash.py"]["instances"] == []
    assert state["deps"] is None and state["problem"] is None


def test_state_without_a_project_and_with_a_problem():
    source = StateSource(project=lambda: None, status=dict, problem=lambda: "vercel.json: bad")
    state = build_state(source, DashboardFeed())
    assert state["functions"] == [] and state["routes"] == [] and state["problem"] == "vercel.json: bad"


def test_deps_panel_of_dev():
    env = SimpleNamespace(python=Path("/env/bin/python"), requirements=("flask==3.0",))
    gate = SimpleNamespace(everyone=None, held={})
    deps = SimpleNamespace(install=True, env=env, installing=False)
    assert deps_panel(deps, gate) == {"state": "ready", "installing": [], "error": None,  # type: ignore[arg-type]
                                      "python": "/env/bin/python", "requirements": ["flask==3.0"]}
    gate.held = {"api/x.py": SimpleNamespace(installing=("httpx",), error=None)}
    assert deps_panel(deps, gate)["state"] == "installing"  # type: ignore[arg-type]
    assert deps_panel(deps, gate)["installing"] == ["httpx"]  # type: ignore[arg-type]
    gate.everyone = SimpleNamespace(installing=(), error=RuntimeError("no such package"))
    panel = deps_panel(deps, gate)  # type: ignore[arg-type]
    assert panel["state"] == "failed" and panel["error"] == "no such package"
    deps.install = False
    assert deps_panel(deps, gate)["state"] == "off"  # type: ignore[arg-type]


def test_process_facts_of_this_process_and_of_none():
    rss, uptime = process_facts(os.getpid())
    assert rss is not None and rss > 1 and uptime is not None and uptime >= 0
    assert process_facts(None) == (None, None)
    assert process_facts(2**22 + 12345) == (None, None)


# ---------------------------------------------------------------------------------------- ASGI
class Client:
    """Drives an ASGI app with one request; ``messages``: what it sent."""

    def __init__(self, app):
        self.app = app

    async def get(self, path, headers=(), query=b"", method="GET", disconnect_after: float | None = None):
        sent = []
        gone = asyncio.Event()

        async def receive():
            if disconnect_after is None:
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(disconnect_after)
            gone.set()
            return {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        s = {**scope(path, query, method), "headers": list(headers)}
        await self.app(s, receive, send)
        return sent


def body_of(sent) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_app_serves_the_page_the_script_and_the_state():
    project = load_project(PROJECT)
    app = DashboardApp(DashboardFeed(), StateSource(project=lambda: project, status=dict))

    async def main():
        client = Client(app)
        return (await client.get("/_fnserve/"), await client.get("/_fnserve/dashboard.js"),
                await client.get("/_fnserve/api/state"), await client.get("/_fnserve/nothing"),
                await client.get("/_fnserve/api/state", method="POST"))

    page, script, state, missing, post = run(main())
    assert page[0]["status"] == 200 and (b"content-type", b"text/html; charset=utf-8") in page[0]["headers"]
    assert b"<script src=\"dashboard.js\"></script>" in body_of(page)
    assert b"http://" not in body_of(page) and b"https://" not in body_of(script)  # nothing fetched from elsewhere
    assert b"EventSource" in body_of(script)
    assert json.loads(body_of(state))["functions"][0]["id"] == "api/broken.py"
    assert missing[0]["status"] == 404 and "/_fnserve/api/events" in json.loads(body_of(missing))["endpoints"]
    assert post[0]["status"] == 405


def test_app_hands_other_paths_to_the_admin_app():
    seen = []

    async def admin(s, receive, send):
        seen.append(s["path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    app = DashboardApp(DashboardFeed(), StateSource(project=lambda: None, status=dict), admin=admin)
    sent = run(Client(app).get("/_fnserve/health"))
    assert seen == ["/_fnserve/health"] and sent[0]["status"] == 204


def test_event_stream_replays_then_streams_then_ends_when_the_client_leaves():
    feed = DashboardFeed()
    feed.message(logging.INFO, "fnserve.dev", "before the page", 1.0)
    app = DashboardApp(feed, StateSource(project=lambda: None, status=dict))

    async def main():
        task = asyncio.get_running_loop().create_task(Client(app).get("/_fnserve/api/events", disconnect_after=0.5))
        while not feed.listening:
            await asyncio.sleep(0.01)
        feed.request(scope("/api/live"), 200, 0.002, "api/hello.py", "id1", 9, False)
        sent = await asyncio.wait_for(task, 5)
        return sent

    sent = run(main())
    assert sent[0]["status"] == 200
    assert (b"content-type", b"text/event-stream; charset=utf-8") in sent[0]["headers"]
    text = body_of(sent).decode()
    assert text.startswith("retry: 1000\n\n")
    assert text.index("before the page") < text.index('"path":"/api/live"')
    assert not feed.listening  # unsubscribed when the client left


def test_event_stream_resumes_after_last_event_id_and_ends_on_stop():
    feed = DashboardFeed()
    for word in ("one", "two", "three"):
        feed.message(logging.INFO, "fnserve.dev", word, 1.0)
    stop = False
    app = DashboardApp(feed, StateSource(project=lambda: None, status=dict), stopping=lambda: stop)

    async def main():
        nonlocal stop
        task = asyncio.get_running_loop().create_task(
            Client(app).get("/_fnserve/api/events", headers=[(b"last-event-id", b"2")], disconnect_after=30))
        await asyncio.sleep(0.2)
        stop = True
        return await asyncio.wait_for(task, 5)

    sent = run(main())
    text = body_of(sent).decode()
    assert '"msg":"three"' in text and '"msg":"two"' not in text
    assert sent[-1] == {"type": "http.response.body", "body": b""}  # the stream ended (the server stops)


@pytest.mark.parametrize("query,expected", [(b"since=1", 2), (b"", 3)])
def test_event_stream_since_query(query, expected):
    feed = DashboardFeed()
    for word in ("one", "two", "three"):
        feed.message(logging.INFO, "fnserve.dev", word, 1.0)
    app = DashboardApp(feed, StateSource(project=lambda: None, status=dict))
    sent = run(Client(app).get("/_fnserve/api/events", query=query, disconnect_after=0.1))
    assert body_of(sent).decode().count("event: message") == expected


def test_subscriber_take_clears_wake():
    async def main():
        sub = Subscriber(limit=3)
        sub.push(b"a")
        assert sub.wake.is_set()
        assert sub.take() == [b"a"] and not sub.wake.is_set()

    run(main())


def test_dev_feeds_the_dashboard_only_while_a_page_is_open():
    from fnserve.server.dev import DevServer
    from fnserve.server.observe import log_access

    dev = DevServer(PROJECT, {"install": False}, environ={}, say=lambda line: None)
    assert dev.app.access_log is log_access  # no page: the hook dev had before the dashboard

    async def main():
        first, second = dev.feed.subscribe(), dev.feed.subscribe()
        hook = dev.app.access_log
        assert isinstance(hook, AccessLog) and hook.feed is dev.feed
        dev.feed.unsubscribe(first)
        assert dev.app.access_log is hook
        dev.feed.unsubscribe(second)

    run(main())
    assert dev.app.access_log is log_access
    dev.load_project()
    assert dev.front.admin is dev.dashboard  # mounted: the project serves nothing under /_fnserve/
