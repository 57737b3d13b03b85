"""Test helper for ``fnserve start`` (issue 6): ``tests/devserver.py``'s ``DevServer`` (copy of a
fixture project, output pump, ``wait_for_line``, ``stop``) running ``python -m fnserve start <dir>
--port 0 --no-install`` instead, with the URL(s) parsed from its ``fnserve start: http://...``
lines (text or JSON log format). ``until(check)`` and ``wait_inflight(url, function, count)``: the
bounded waits the ``start`` tests share."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import httpx
from devserver import PROJECTS, DevServer

__all__ = ["PROJECTS", "StartServer", "until", "wait_inflight"]

URL_RE = re.compile(r"fnserve start: (admin endpoints on )?(http://[0-9.]+:[0-9]+)")


def until(check: Callable[[], object], timeout: float = 15.0, what: str = "") -> None:
    """Call ``check()`` every 0.1 s until it is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_inflight(url: str, function: str, count: int, timeout: float = 10.0) -> None:
    """Until ``url``'s /_fnserve/metrics shows ``count`` requests inside ``function``'s instances
    (``function``: its id, e.g. "api/slow.py"); AssertionError with the metrics after ``timeout`` s."""
    want = f'fnserve_function_inflight{{function="{function}"}} {count}'
    deadline = time.monotonic() + timeout
    text = ""
    while time.monotonic() < deadline:
        text = httpx.get(url + "/_fnserve/metrics", timeout=5).text
        if want in text:
            return
        time.sleep(0.02)
    raise AssertionError(f"never saw {want!r}:\n{text}")


class StartServer(DevServer):
    """``fnserve start`` on a copy of ``tests/projects/<case>``. ``url``: the main port;
    ``admin_url``: the admin port's base URL when ``--admin-port`` was given."""

    admin_url = ""

    def start(self, timeout: float = 30.0, *, expect_admin: bool = False) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fnserve", "start", str(self.project), "--port", "0", "--no-install", *self.args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=self.env, start_new_session=True,
        )
        threading.Thread(target=self._pump, daemon=True).start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                for m in URL_RE.finditer(line):
                    if m.group(1):
                        self.admin_url = m.group(2)
                    else:
                        self.url = m.group(2)
            if self.url and (self.admin_url or not expect_admin):
                break
            if self.proc.poll() is not None:
                raise RuntimeError("fnserve start exited:\n" + self.output())
            time.sleep(0.05)
        else:
            raise RuntimeError("fnserve start printed no URL:\n" + self.output())
        httpx.get(self.url + "/_fnserve/health", timeout=5)  # neither logged nor counted

    def signal(self, signum: int = signal.SIGTERM) -> None:
        """Send ``signum`` to the server process itself (workers run in their own sessions)."""
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)
