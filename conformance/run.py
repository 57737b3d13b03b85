#!/usr/bin/env python3
"""Conformance runner: the same requests against fnserve and against the platforms' own runtimes.

Each fixture is ``conformance/projects/<name>/`` with ``project/`` (an unchanged platform project)
and ``cases.toml`` (``platform = "vercel" | "edgeone"``, optional ``vercel_framework``, and
``[[case]]`` tables: ``method``, ``path``, ``headers``, ``body`` / ``body_b64``; ``expect.status``,
``expect.headers`` (name -> value, or a list for repeated headers, compared in order),
``expect.headers_contain`` (name -> substring), ``expect.body`` / ``expect.body_b64`` (exact),
``expect.body_contains`` (list), ``expect.json`` (every key given must be equal; nested tables
likewise), ``expect.json_startswith`` (key -> prefix of a string value), ``expect.streamed`` (the first body chunk arrives at least 0.2 s before the last one);
``differs = "<anchor>"`` names the ``docs/COMPATIBILITY.md`` entry where the platform is known to
answer otherwise).

Usage::

    python conformance/run.py --runtime fnserve [--dev] [--start] [--project NAME ...]
    python conformance/run.py --runtime vercel|edgeone [--project NAME ...]

``--runtime fnserve`` copies each fixture to a scratch folder and runs ``python -m fnserve dev`` or
``start`` on it (loopback, port 0, ``--no-install``: the fixtures' packages come from fnserve's own
``[test]`` extra); ``--dev`` and ``--start`` may be combined (default: ``--dev``). Cases listed in
``conformance/pending.toml`` are reported as ``PENDING`` when they fail and make the run fail when
they pass (remove them from the list then). ``--runtime vercel|edgeone`` runs the fixtures of that
platform with its own local runtime through the scripts in ``shared/peers/`` (``--peers DIR`` or
``$FNSERVE_PEERS``); a failing case marked ``differs`` is reported as ``DIFFERS`` (documented).

Prints a per-case diff and ends with one line ``N passed, M failed``; exits 1 when M > 0, 2 on a
usage error. Every wait has a timeout and every process started is ended before exit.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10: the backport, same API (a dependency of fnserve there)
    import tomli as tomllib

HERE = Path(__file__).resolve().parent
PROJECTS = HERE / "projects"
PENDING_FILE = HERE / "pending.toml"
REPO = HERE.parent
URL_RE = re.compile(r"fnserve (?:dev|start): (http://[0-9.]+:[0-9]+)")
STREAM_GAP = 0.2  # s between first and last body chunk for ``expect.streamed``
REQUEST_TIMEOUT = 30.0


# ---------------------------------------------------------------- fixtures
@dataclass(frozen=True)
class Case:
    """One request and what the platform answers to it."""

    name: str
    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    expect: Mapping[str, Any]
    differs: str | None


@dataclass(frozen=True)
class Fixture:
    name: str
    platform: str
    vercel_framework: str
    description: str
    cases: tuple[Case, ...]

    @property
    def project(self) -> Path:
        return PROJECTS / self.name / "project"


def load_fixture(name: str) -> Fixture:
    """Read ``projects/<name>/cases.toml``. Raises ``SystemExit(2)`` naming the file on a bad one."""
    path = PROJECTS / name / "cases.toml"
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise SystemExit(f"conformance: cannot read {path}: {exc}") from exc
    platform = data.get("platform")
    if platform not in ("vercel", "edgeone"):
        raise SystemExit(f"conformance: {path}: platform must be 'vercel' or 'edgeone', not {platform!r}")
    cases = []
    for i, raw in enumerate(data.get("case", [])):
        if "name" not in raw or "path" not in raw or "expect" not in raw:
            raise SystemExit(f"conformance: {path}: case #{i + 1} needs name, path and expect")
        body = base64.b64decode(raw["body_b64"]) if "body_b64" in raw else raw.get("body", "").encode()
        cases.append(Case(raw["name"], raw.get("method", "GET"), raw["path"], raw.get("headers", {}), body,
                          raw["expect"], raw.get("differs")))
    names = [c.name for c in cases]
    if len(set(names)) != len(names):
        raise SystemExit(f"conformance: {path}: two cases have the same name")
    return Fixture(name, platform, str(data.get("vercel_framework", "null")), data.get("description", ""),
                   tuple(cases))


def all_fixtures() -> list[str]:
    return sorted(p.parent.name for p in PROJECTS.glob("*/cases.toml"))


@dataclass(frozen=True)
class Pending:
    project: str
    case: str
    items: tuple[int, ...]
    modes: tuple[str, ...]
    why: str

    @property
    def label(self) -> str:
        return "issue 9 item " + " + ".join(str(i) for i in self.items)


def load_pending() -> dict[tuple[str, str], Pending]:
    """``pending.toml``: ``[[pending]]`` tables with ``project``, ``case``, ``item`` (issue 9 item 1-6, or a list),
    optional ``modes`` (default both) and ``why``. Unknown projects or cases are an error."""
    data = tomllib.loads(PENDING_FILE.read_text()) if PENDING_FILE.exists() else {}
    out: dict[tuple[str, str], Pending] = {}
    for raw in data.get("pending", []):
        key = (raw["project"], raw["case"])
        fixture = load_fixture(raw["project"])
        if raw["case"] not in {c.name for c in fixture.cases}:
            raise SystemExit(f"conformance: {PENDING_FILE}: {raw['project']} has no case {raw['case']!r}")
        items = raw.get("item")
        items = [items] if isinstance(items, int) else items
        if not items or not all(isinstance(i, int) and 1 <= i <= 6 for i in items):
            raise SystemExit(f"conformance: {PENDING_FILE}: {key} needs the issue 9 item (1-6) it waits for")
        if key in out:
            raise SystemExit(f"conformance: {PENDING_FILE}: {key} is listed twice")
        out[key] = Pending(raw["project"], raw["case"], tuple(items), tuple(raw.get("modes", ("dev", "start"))),
                           raw.get("why", ""))
    return out


# ---------------------------------------------------------------- processes
def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (from /proc; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Server:
    """A process serving a scratch copy of a fixture; ``url`` once ``start`` returned."""

    def __init__(self, argv: list[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        self.argv = argv
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.lines: list[str] = []
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""

    def spawn(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self.env, cwd=self.cwd, start_new_session=True, errors="replace")
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def output(self, last: int = 40) -> str:
        return "\n".join(self.lines[-last:])

    def wait_url(self, timeout: float) -> None:
        """Wait for fnserve's ``fnserve dev|start: http://...`` line."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = URL_RE.search(line)
                if m:
                    self.url = m.group(1)
                    return
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}:\n{self.output()}")
            time.sleep(0.05)
        raise RuntimeError(f"printed no URL in {timeout:.0f} s:\n{self.output()}")

    def wait_answers(self, probe: str, timeout: float) -> None:
        """Wait until ``GET url+probe`` gets any HTTP answer other than 502 (a proxy still starting);
        a malformed answer counts too (the server is up: the cases will show what is wrong)."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with {self.proc.returncode}:\n{self.output()}")
            try:
                if httpx.get(self.url + probe, timeout=5).status_code != 502:
                    return
            except httpx.RemoteProtocolError:
                return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"does not answer at {self.url} after {timeout:.0f} s:\n{self.output()}")

    def stop(self) -> None:
        """SIGTERM to the process group, SIGKILL after 10 s to it and to every descendant left
        (fnserve's workers and the peers' function processes may sit in their own sessions)."""
        if self.proc is None:
            return
        pids = _descendants(self.proc.pid)
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        deadline = time.monotonic() + 5
        for pid in pids:
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def find_peers(explicit: str | None) -> Path:
    candidates = [explicit, os.environ.get("FNSERVE_PEERS"), REPO.parent / "shared" / "peers",
                  REPO.parent.parent / "shared" / "peers"]
    for c in candidates:
        if c and (Path(c) / "vercel.sh").exists():
            return Path(c)
    raise SystemExit("conformance: the peers scripts (vercel.sh, edgeone.sh) are not found: pass --peers DIR "
                     "or set FNSERVE_PEERS")


@contextlib.contextmanager
def serve(runtime: str, mode: str, fixture: Fixture, scratch: Path, args: argparse.Namespace) -> Iterator[Server]:
    """Start ``fixture`` under ``runtime`` on a copy in ``scratch``; yield the ready server; stop it."""
    project = scratch / fixture.name
    shutil.copytree(fixture.project, project, ignore=shutil.ignore_patterns("__pycache__", ".fnserve"))
    if runtime == "fnserve":
        argv = [sys.executable, "-m", "fnserve", mode, str(project), "--port", "0", "--host", "127.0.0.1"]
        if not args.install:
            argv.append("--no-install")
        server = Server(argv, env={"PYTHONDONTWRITEBYTECODE": "1"})
    else:
        peers = find_peers(args.peers)
        port = free_port()
        if runtime == "vercel":
            argv = ["bash", str(peers / "vercel.sh"), str(project), str(port), fixture.vercel_framework]
        else:
            argv = ["bash", str(peers / "edgeone.sh"), str(project), str(port)]
        server = Server(argv)
        server.url = f"http://127.0.0.1:{port}"
    try:
        server.spawn()
        if runtime == "fnserve":
            server.wait_url(args.start_timeout)
        # a path no fixture serves: every runtime answers it (404) once all its functions are loaded
        server.wait_answers("/_fnserve/health" if mode == "start" else "/__conformance_probe__", args.start_timeout)
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------- requests and checks
@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    body: bytes
    chunk_times: list[float] = field(default_factory=list)


def send(client: httpx.Client, base: str, case: Case) -> Answer:
    times: list[float] = []
    chunks: list[bytes] = []
    with client.stream(case.method, base + case.path, headers=dict(case.headers),
                       content=case.body if case.body else None) as resp:
        for chunk in resp.iter_raw():
            if chunk:
                times.append(time.monotonic())
                chunks.append(chunk)
        return Answer(resp.status_code, resp.headers, b"".join(chunks), times)


def _show(data: bytes, limit: int = 300) -> str:
    try:
        text = data.decode()
    except UnicodeDecodeError:
        return f"<{len(data)} bytes, base64 {base64.b64encode(data[:96]).decode()}...>"
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _json_diff(expected: Any, got: Any, where: str = "") -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return [f"json{where}: expected an object, got {got!r}"]
        out = []
        for k, v in expected.items():
            if k not in got:
                out.append(f"json{where}.{k}: missing (expected {v!r})")
            else:
                out.extend(_json_diff(v, got[k], f"{where}.{k}"))
        return out
    return [] if expected == got else [f"json{where}: expected {expected!r}, got {got!r}"]


def check(case: Case, answer: Answer) -> list[str]:
    """The differences between ``case.expect`` and ``answer``, one line each (empty: it passed)."""
    exp, diffs = case.expect, []
    if "status" in exp and answer.status != exp["status"]:
        diffs.append(f"status: expected {exp['status']}, got {answer.status}")
    for name, want in exp.get("headers", {}).items():
        got = answer.headers.get_list(name)
        if isinstance(want, list):
            if got != want:
                diffs.append(f"header {name}: expected {want!r}, got {got!r}")
        elif got != [want]:
            diffs.append(f"header {name}: expected {want!r}, got {got if len(got) != 1 else got[0]!r}")
    for name, part in exp.get("headers_contain", {}).items():
        got_value = answer.headers.get(name)
        if got_value is None or part not in got_value:
            diffs.append(f"header {name}: expected to contain {part!r}, got {got_value!r}")
    if "body" in exp and answer.body != exp["body"].encode():
        diffs.append(f"body: expected {_show(exp['body'].encode())}, got {_show(answer.body)}")
    if "body_b64" in exp and answer.body != base64.b64decode(exp["body_b64"]):
        diffs.append(f"body: expected {_show(base64.b64decode(exp['body_b64']))}, got {_show(answer.body)}")
    for part in exp.get("body_contains", []):
        if part.encode() not in answer.body:
            diffs.append(f"body: expected to contain {part!r}, got {_show(answer.body)}")
    if "json" in exp:
        try:
            got_json = json.loads(answer.body)
        except ValueError:
            diffs.append(f"body: expected JSON, got {_show(answer.body)}")
        else:
            diffs.extend(_json_diff(exp["json"], got_json))
    for key, prefix in exp.get("json_startswith", {}).items():
        try:
            value = json.loads(answer.body).get(key)
        except (ValueError, AttributeError):
            value = None
        if not isinstance(value, str) or not value.startswith(prefix):
            diffs.append(f"json.{key}: expected to start with {prefix!r}, got {value!r}")
    if exp.get("streamed"):
        gap = answer.chunk_times[-1] - answer.chunk_times[0] if answer.chunk_times else 0.0
        if gap < STREAM_GAP:
            diffs.append(f"streaming: expected the body in pieces over >= {STREAM_GAP} s, got it in "
                         f"{len(answer.chunk_times)} chunk(s) over {gap:.3f} s (buffered)")
    return diffs


# ---------------------------------------------------------------- main
@dataclass
class Tally:
    passed: int = 0
    failed: int = 0
    pending: int = 0
    differs: int = 0
    notes: list[str] = field(default_factory=list)


def run_fixture(runtime: str, mode: str, fixture: Fixture, pending: Mapping[tuple[str, str], Pending],
                args: argparse.Namespace, tally: Tally) -> None:
    label = fixture.name if runtime != "fnserve" else f"{fixture.name} [{mode}]"
    print(f"== {label}: {fixture.description}", flush=True)
    with tempfile.TemporaryDirectory(prefix="fnserve-conformance-") as tmp:
        try:
            # fnserve start: a new connection per request, each case sent twice: the first may reach a
            # cold function (served through the front), the second a warm one (its connection passed
            # to the instance: the direct path, issue 14 item 2); both must answer the same
            direct = runtime == "fnserve" and mode == "start"
            limits = httpx.Limits(max_keepalive_connections=0) if direct else httpx.Limits()
            with serve(runtime, mode, fixture, Path(tmp), args) as server, \
                    httpx.Client(timeout=REQUEST_TIMEOUT, follow_redirects=False, limits=limits) as client:
                for case in fixture.cases:
                    diffs = []
                    for attempt in range(2 if direct else 1):
                        try:
                            found = check(case, send(client, server.url, case))
                        except httpx.HTTPError as exc:
                            found = [f"request failed: {type(exc).__name__}: {exc}"]
                        diffs.extend(f"{'warm request: ' if attempt else ''}{d}" for d in found)
                    report(runtime, mode, fixture, case, diffs, pending, tally)
                if args.verbose:
                    print("   -- server output (last lines):\n" + server.output(), flush=True)
        except RuntimeError as exc:
            for case in fixture.cases:
                report(runtime, mode, fixture, case, [f"server did not start: {str(exc)[:3000]}"], pending, tally)


def report(runtime: str, mode: str, fixture: Fixture, case: Case, diffs: list[str],
           pending: Mapping[tuple[str, str], Pending], tally: Tally) -> None:
    waits = pending.get((fixture.name, case.name)) if runtime == "fnserve" else None
    if waits is not None and mode not in waits.modes:
        waits = None
    if not diffs and waits is not None:
        tally.failed += 1
        print(f"  FAIL  {case.name}: listed in pending.toml ({waits.label}) but passes: "
              "remove it from the list", flush=True)
        return
    if not diffs:
        tally.passed += 1
        note = ""
        if runtime != "fnserve" and case.differs:
            note = f"  (note: the difference documented at docs/COMPATIBILITY.md#{case.differs} did not show)"
        print(f"  ok    {case.name}{note}", flush=True)
        return
    if waits is not None:
        tally.pending += 1
        status = f"PENDING ({waits.label})"
    elif runtime != "fnserve" and case.differs:
        tally.differs += 1
        status = f"DIFFERS (docs/COMPATIBILITY.md#{case.differs})"
    else:
        tally.failed += 1
        status = "FAIL"
    print(f"  {status}  {case.name}  [{case.method} {case.path}]", flush=True)
    for line in diffs:
        print(f"        {line}", flush=True)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runtime", choices=("fnserve", "vercel", "edgeone"), required=True)
    parser.add_argument("--project", action="append", default=[], metavar="NAME",
                        help="fixture under conformance/projects/ (repeatable; default: all for the runtime)")
    parser.add_argument("--dev", action="store_true", help="fnserve: run under `fnserve dev` (the default)")
    parser.add_argument("--start", action="store_true", help="fnserve: run under `fnserve start`")
    parser.add_argument("--install", action="store_true",
                        help="fnserve: let fnserve install the fixture's requirements (default: --no-install)")
    parser.add_argument("--peers", default=None, help="folder of vercel.sh/edgeone.sh (default: ../shared/peers)")
    parser.add_argument("--start-timeout", type=float, default=None,
                        help="seconds a server gets to answer (default: 60 for fnserve, 900 for the peers)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each server's last output lines")
    args = parser.parse_args(argv)
    # SIGTERM (timeout, CI) unwinds like Ctrl-C, so every server started is stopped on the way out
    signal.signal(signal.SIGTERM, _terminate)
    if args.start_timeout is None:
        args.start_timeout = 60.0 if args.runtime == "fnserve" else 900.0
    names = args.project or all_fixtures()
    unknown = [n for n in names if not (PROJECTS / n / "cases.toml").exists()]
    if unknown:
        parser.error(f"no fixture {', '.join(unknown)} (known: {', '.join(all_fixtures())})")
    fixtures = [load_fixture(n) for n in names]
    pending = load_pending()
    modes = [m for m in ("dev", "start") if getattr(args, m)] or ["dev"]
    if args.runtime != "fnserve":
        modes = ["-"]
    tally = Tally()
    for fixture in fixtures:
        if args.runtime != "fnserve" and fixture.platform != args.runtime:
            print(f"== {fixture.name}: skipped ({fixture.platform} layout only)", flush=True)
            continue
        for mode in modes:
            run_fixture(args.runtime, mode, fixture, pending, args, tally)
    extra = []
    if tally.pending:
        extra.append(f"{tally.pending} pending (pending.toml)")
    if tally.differs:
        extra.append(f"{tally.differs} documented differences (docs/COMPATIBILITY.md)")
    if extra:
        print("; ".join(extra))
    print(f"{tally.passed} passed, {tally.failed} failed", flush=True)
    return 1 if tally.failed else 0


if __name__ == "__main__":
    sys.exit(main())
