"""The dashboard in a real browser (issue 13 item 2): headless Chromium (Debian's ``chromium``)
driven by Playwright loads ``/_fnserve/`` of a ``fnserve dev`` server, requests are sent to the
project, and the page shows them as they happen; a screenshot is saved as an artifact
(``$FNSERVE_ARTIFACTS/dashboard.png``, default ``build/artifacts/``).

Skipped only when no Chromium is installed (``make e2e-browser`` installs it with apt-get and
runs this file). ``FNSERVE_CHROMIUM``: another Chromium executable; ``FNSERVE_E2E_LOAD_SECONDS``:
how long requests are sent before the screenshot (default 6 s: two points on the latency chart).
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest
from devserver import DevServer

ROOT = Path(__file__).resolve().parent.parent.parent


def chromium() -> str | None:
    """Debian's Chromium (or ``FNSERVE_CHROMIUM``), None when there is none."""
    configured = os.environ.get("FNSERVE_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = chromium()
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium installed (make e2e-browser installs it)")


def artifacts() -> Path:
    folder = Path(os.environ.get("FNSERVE_ARTIFACTS") or ROOT / "build" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.mark.timeout(180)
def test_dashboard_shows_requests_live_in_chromium(tmp_path: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    server = DevServer("dashboard", tmp_path, "--no-install")
    server.start()
    load_seconds = float(os.environ.get("FNSERVE_E2E_LOAD_SECONDS", "6"))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                errors: list[str] = []
                page.on("pageerror", lambda exc: errors.append(str(exc)))
                page.goto(server.url + "/_fnserve/")
                expect(page.locator("#live")).to_have_class("on", timeout=15000)  # the event stream is open
                expect(page.locator('.fn[data-function="api/hello.py"] .badge')).to_have_text("not started")
                expect(page.locator("#routes tbody tr")).to_have_count(4)  # /api/x.py aliases folded

                # one request, and it appears in the live log without reloading the page
                with httpx.Client(base_url=server.url, timeout=30) as client:
                    assert client.get("/api/hello", params={"first": "1"}).status_code == 200
                row = page.locator('tr.request[data-path="/api/hello?first=1"]')
                expect(row).to_have_count(1, timeout=10000)
                expect(row.locator("td").nth(3)).to_have_text("200")
                expect(row.locator("td").nth(6)).to_have_text("cold")
                expect(page.locator("#output div", has_text="hello handled /api/hello?first=1")).to_have_count(1)
                expect(page.locator('.fn[data-function="api/hello.py"] .badge')).to_have_text("ready", timeout=10000)

                # a function that does not import: a 500 in the log, its traceback in its row
                with httpx.Client(base_url=server.url, timeout=30) as client:
                    assert client.get("/api/broken").status_code == 500
                expect(page.locator('tr.request[data-path="/api/broken"] td').nth(3)).to_have_text("500", timeout=10000)
                expect(page.locator('.fn[data-function="api/broken.py"] .badge')).to_have_text("load error",
                                                                                               timeout=10000)
                expect(page.locator('.fn[data-function="api/broken.py"] pre.trace')).to_contain_text("KeyError: 'timeout'")

                # a worker that dies while serving: 502, and the function shows as crashed
                with httpx.Client(base_url=server.url, timeout=30) as client:
                    assert client.get("/api/crash", params={"die": "1"}).status_code == 502
                expect(page.locator('.fn[data-function="api/crash.py"] .badge')).to_have_text("crashed", timeout=10000)
                expect(page.locator('.fn[data-function="api/crash.py"] .detail')).to_contain_text("exited with status 3")

                # a little traffic for the latency chart (and a line on stderr)
                stop = time.monotonic() + load_seconds

                def traffic() -> None:
                    with httpx.Client(base_url=server.url, timeout=30) as client:
                        n = 0
                        while time.monotonic() < stop:
                            client.get("/api/items", params={"n": "x" * (n % 5)})
                            client.get("/api/hello")
                            client.get("/index.html")
                            n += 1
                            time.sleep(0.02)
                        client.get("/api/hello", params={"warn": "1"})
                        client.get("/api/items", params={"last": "1"})

                thread = threading.Thread(target=traffic)
                thread.start()
                thread.join(load_seconds + 60)
                expect(page.locator('tr.request[data-path="/api/items?last=1"]')).to_have_count(1, timeout=10000)
                expect(page.locator("#output div.stderr", has_text="a warning on stderr")).to_have_count(1)
                expect(page.locator('.fn[data-function="api/items.py"] svg polyline')).to_have_count(2, timeout=10000)
                assert errors == []
                shot = artifacts() / "dashboard.png"
                page.wait_for_timeout(2200)  # one more state refresh: the latest latency point
                page.screenshot(path=str(shot), full_page=False)
                print(f"screenshot: {shot}")
                assert shot.stat().st_size > 10_000
            finally:
                browser.close()
    finally:
        server.stop()
