"""End-to-end check of the ``container`` target (issue 11 acceptance): ``make e2e-container``.

Not part of ``make test`` (pytest collects ``test_*.py`` only; this file is run as a script). It
needs root, podman and a Debian mirror, and takes a minute or two:

1. tools: podman, an OCI runtime and mmdebstrap, installed with apt-get when missing;
2. a base image with Debian's ``python3`` (the suite whose Python is this interpreter's: bookworm
   3.11, trixie 3.13), made with ``mmdebstrap`` (no container registry is needed) and
   ``podman import``ed; reused when it exists;
3. ``examples/showcase`` copied to a temporary folder and served by ``fnserve start DIR``
   (loopback, port 0) to record what each route answers;
4. ``fnserve build --target container --image fnserve-showcase:test`` with
   ``CONTAINER_BASE_IMAGE`` naming that base;
5. the container contract: ``podman run -e PORT=P -p 127.0.0.1:P:P``; it listens on ``$PORT``,
   ``/_fnserve/ready`` turns 200, the image's HEALTHCHECK passes, it runs as uid 1000, every
   showcase route (handler, Flask, FastAPI, raw ASGI, dynamic, catch-all, static, the vercel.json
   rewrite and redirect, 404s) answers as under ``fnserve start``; ``podman stop`` (SIGTERM)
   while a request is in flight (``api/slow.py``, added to the copy, sleeps 1.5 s) → that request
   completes with 200 and the container exits with status 0 within the grace period.

Every wait has a timeout; the container, the image under test and the temporary folder are
removed at the end (the base image is kept for the next run). Exit status 0 when everything
held, 1 otherwise, with what failed.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "build"))

from buildsupport import responses, serving  # noqa: E402
from test_start_from import SHOWCASE  # noqa: E402

IMAGE = "fnserve-showcase:test"
CONTAINER = f"fnserve-e2e-container-{os.getpid()}"
SUITES = {"3.11": "bookworm", "3.13": "trixie"}  # Debian suites and their python3
MIRROR = "http://deb.debian.org/debian"
APT_PACKAGES = ["podman", "runc", "mmdebstrap", "uidmap", "slirp4netns", "fuse-overlayfs"]
BASE_PACKAGES = "python3,passwd"  # python3 (with its venv module) and useradd: all the Containerfile needs
GRACE = 30  # s: fnserve's default grace_period; podman stop waits this long before SIGKILL
STARTED = time.monotonic()
# Some sandboxes (this one: no CAP_SYS_RESOURCE) refuse the rlimits podman asks the OCI runtime to
# set on the container's process; this wrapper drops them from the spec and runs the real runtime.
RUNTIME_WRAPPER = """#!{python}
import json, os, sys
args = sys.argv[1:]
for flag, bundle in (("--bundle", True), ("-b", True), ("--process", False), ("-p", False)):
    if flag in args:
        path = args[args.index(flag) + 1]
        path = os.path.join(path, "config.json") if bundle else path
        with open(path) as f:
            spec = json.load(f)
        holder = spec.get("process", spec) if bundle else spec
        if holder.pop("rlimits", None) is not None:
            with open(path, "w") as f:
                json.dump(spec, f)
os.execv({runtime!r}, [{runtime!r}, *args])
"""


SLOW_SECONDS = 1.5
SLOW = f"""from http.server import BaseHTTPRequestHandler
import time
class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep({SLOW_SECONDS})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"slept")
"""


def _get(url: str) -> tuple[int, str] | str:
    try:
        resp = httpx.get(url, timeout=GRACE)
        return resp.status_code, resp.text
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"


class Failed(Exception):
    """One check of the contract did not hold (the message says which and what was seen)."""


def say(line: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {line}", flush=True)


def run(args: Sequence[str], *, timeout: float, check: bool = True, env: dict[str, str] | None = None,
        show: bool = False) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (bounded by ``timeout``); ``show``: print its output as it comes."""
    if show:
        say("$ " + " ".join(args))
        proc = subprocess.Popen(list(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        lines = []
        deadline = time.monotonic() + timeout
        for line in proc.stdout:
            lines.append(line)
            print("    " + line.rstrip(), flush=True)
            if time.monotonic() > deadline:
                proc.kill()
                raise Failed(f"`{' '.join(args)}` took longer than {timeout:.0f} s")
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        result = subprocess.CompletedProcess(list(args), status, "".join(lines), "")
    else:
        try:
            result = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env,
                                    stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise Failed(f"`{' '.join(args)}` took longer than {timeout:.0f} s") from exc
    if check and result.returncode != 0:
        raise Failed(f"`{' '.join(args)}` exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def ensure_tools() -> None:
    missing = [tool for tool in ("podman", "mmdebstrap") if shutil.which(tool) is None]
    if not missing:
        say("tools: podman and mmdebstrap are installed")
        return
    if os.geteuid() != 0:
        raise Failed(f"{', '.join(missing)} missing and not root: install {' '.join(APT_PACKAGES)}")
    say(f"tools: {', '.join(missing)} missing: apt-get install {' '.join(APT_PACKAGES)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run(["apt-get", "update", "-o", "DPkg::Lock::Timeout=300"], timeout=600, env=env)
    run(["apt-get", "install", "-y", "-o", "DPkg::Lock::Timeout=300", *APT_PACKAGES], timeout=900, env=env)
    say("tools: " + run(["podman", "--version"], timeout=30).stdout.strip())


def ensure_base(work: Path) -> str:
    """A local image with Debian's python3 of this interpreter's version (made with mmdebstrap)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    suite = SUITES.get(version)
    if suite is None:
        raise Failed(f"no Debian suite known with Python {version} (known: {SUITES}); run with one of those")
    name = f"localhost/fnserve-e2e-base:{suite}"
    if run(["podman", "image", "exists", name], timeout=60, check=False).returncode == 0:
        say(f"base: {name} exists (Debian {suite}, made by an earlier run)")
        return name
    tar = work / f"{suite}.tar"
    run(["mmdebstrap", "--variant=apt", f"--include={BASE_PACKAGES}", "--format=tar", suite, str(tar), MIRROR],
        timeout=900, show=True)
    run(["podman", "import", "--change", 'CMD ["/bin/sh"]', str(tar), name], timeout=300)
    tar.unlink()
    say(f"base: {name} imported")
    return name


def pick_runtime(base: str, work: Path) -> list[str]:
    """``podman run`` options for the OCI runtime: none when the default one starts a container
    here, else a wrapper that drops the rlimits the sandbox refuses."""
    probe = run(["podman", "run", "--rm", "--no-healthcheck", base, "true"], timeout=120, check=False)
    if probe.returncode == 0:
        say("runtime: podman's default OCI runtime works here")
        return []
    if "rlimit" not in probe.stderr:
        raise Failed(f"podman cannot start a container here:\n{probe.stderr}")
    runtime = shutil.which("runc") or shutil.which("crun")  # crun refuses hybrid cgroups here
    if runtime is None:
        raise Failed("no OCI runtime (runc or crun) found")
    wrapper = work / "oci-runtime-without-rlimits"
    wrapper.write_text(RUNTIME_WRAPPER.format(python=sys.executable, runtime=runtime))
    wrapper.chmod(0o755)
    say(f"runtime: {probe.stderr.strip().splitlines()[-1]}")
    say(f"runtime: the sandbox refuses to set rlimits; using {runtime} through a wrapper that drops them")
    options = ["--runtime", str(wrapper)]
    run(["podman", "run", "--rm", "--no-healthcheck", *options, base, "true"], timeout=120)
    return options


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, timeout: float) -> float:
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout:
        try:
            status = httpx.get(url + "/_fnserve/ready", timeout=2).status_code
            if status == 200:
                return time.monotonic() - started
            last = f"status {status}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.2)
    raise Failed(f"{url}/_fnserve/ready did not turn 200 within {timeout:.0f} s (last: {last})")


def check(condition: bool, what: str) -> None:
    if not condition:
        raise Failed(what)
    say(f"ok: {what}")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="fnserve-e2e-container-"))
    runtime: list[str] = []
    try:
        ensure_tools()
        base = ensure_base(work)
        runtime = pick_runtime(base, work)
        project = work / "showcase"
        shutil.copytree(ROOT / "examples" / "showcase", project)
        (project / "api" / "slow.py").write_text(SLOW)  # one request in flight when SIGTERM comes
        with serving(str(project)) as url:
            expected = responses(url, SHOWCASE)
        say(f"fnserve start {project.name}: {len(expected)} responses recorded")
        env = {k: v for k, v in os.environ.items() if not k.startswith("FNSERVE_")}
        env["CONTAINER_BASE_IMAGE"] = base
        if runtime:  # the image build's RUN steps through the same runtime (podman build reads BUILDAH_RUNTIME)
            env["BUILDAH_RUNTIME"] = runtime[1]
        run([sys.executable, "-m", "fnserve", "build", str(project), "--target", "container", "--image", IMAGE],
            timeout=900, env=env, show=True)
        port = free_port()
        options = ["-e", f"PORT={port}", "-p", f"127.0.0.1:{port}:{port}"]
        started = run(["podman", "run", "-d", "--name", CONTAINER, *runtime, *options, IMAGE], timeout=120,
                      check=False)
        if started.returncode != 0:  # rootful port publishing unavailable: share the host's loopback
            say(f"run with -p failed ({started.stderr.strip().splitlines()[-1:]}); retrying with --network host")
            run(["podman", "rm", "-f", CONTAINER], timeout=60, check=False)
            options = ["-e", f"PORT={port}", "--network", "host"]
            run(["podman", "run", "-d", "--name", CONTAINER, *runtime, *options, IMAGE], timeout=120)
        say("$ podman run -d --name " + " ".join([CONTAINER, *runtime, *options, IMAGE]))
        url = f"http://127.0.0.1:{port}"
        ready_after = wait_ready(url, 60)
        check(True, f"listens on $PORT={port}; /_fnserve/ready 200 after {ready_after:.1f} s")
        check(httpx.get(url + "/_fnserve/health", timeout=5).status_code == 200, "/_fnserve/health 200")
        health = run(["podman", "healthcheck", "run", CONTAINER], timeout=60, check=False)
        check(health.returncode == 0, f"the image's HEALTHCHECK passes (`podman healthcheck run`: exit "
                                      f"{health.returncode} {health.stdout.strip() or 'healthy'})")
        uid = run(["podman", "exec", CONTAINER, "id", "-u"], timeout=60).stdout.strip()
        user = run(["podman", "inspect", "--format", "{{.Config.User}}", IMAGE], timeout=60).stdout.strip()
        check(uid == "1000" and user == "1000:1000", f"runs as a non-root user (uid {uid}, image USER {user})")
        got = responses(url, SHOWCASE)
        mismatches = []
        for want, have in zip(expected, got):
            method, path, status, ctype, body = have
            same = want == have
            print(f"    {'==' if same else '!='} {method:6} {path:28} {status} {ctype or '-':28} "
                  f"{len(body):5} bytes", flush=True)
            if not same:
                mismatches.append(f"{method} {path}: start gave {want[2:]!r}, the container {have[2:]!r}")
        check(not mismatches, f"{len(got)} showcase routes answer as under `fnserve start`"
              + ("" if not mismatches else ":\n" + "\n".join(mismatches)))
        in_flight: list[object] = []
        slow = threading.Thread(target=lambda: in_flight.append(_get(url + "/api/slow")), daemon=True)
        slow.start()
        time.sleep(SLOW_SECONDS / 3)  # the request is being served when SIGTERM arrives
        stop_started = time.monotonic()
        run(["podman", "stop", "--time", str(GRACE), CONTAINER], timeout=GRACE + 30)
        stopped_after = time.monotonic() - stop_started
        slow.join(timeout=GRACE)
        code = run(["podman", "inspect", "--format", "{{.State.ExitCode}}", CONTAINER], timeout=60).stdout.strip()
        logs = run(["podman", "logs", CONTAINER], timeout=60).stdout.strip().splitlines()
        for line in logs[-4:]:
            print("    | " + line, flush=True)
        check(code == "0" and stopped_after < GRACE,
              f"podman stop (SIGTERM) → exit status {code} after {stopped_after:.1f} s (grace period {GRACE} s)")
        check(any("SIGTERM received" in line for line in logs), "fnserve logged the SIGTERM drain")
        check(in_flight == [(200, "slept")], f"the request in flight during SIGTERM completed: {in_flight}")
        say("e2e-container: all checks passed")
        return 0
    except Failed as exc:
        say(f"e2e-container: FAILED: {exc}")
        return 1
    finally:
        if shutil.which("podman"):
            subprocess.run(["podman", "rm", "-f", "--time", "5", CONTAINER], capture_output=True, timeout=60)
            subprocess.run(["podman", "rmi", "-f", IMAGE], capture_output=True, timeout=120)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
