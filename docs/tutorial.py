"""Write docs/TUTORIAL.md by running a first session with fnserve (issue 13).

The transcript is not typed by hand: this script runs, in a temporary folder, what a new user does —
``fnserve init`` → ``fnserve dev`` → a request → an edit → a syntax error → the fix → ``fnserve build``
→ ``fnserve start --from`` — and records each command with what fnserve printed and what the server
answered. The temporary folder's path is shown as ``~``. 127.0.0.1 only; every step bounded in time;
every process started is stopped at the end.

    .venv/bin/python docs/tutorial.py            # rewrites docs/TUTORIAL.md (needs PyPI for Flask)
    .venv/bin/python docs/tutorial.py --stdout   # prints it instead
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
FNSERVE = str(Path(sys.executable).with_name("fnserve"))
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def free_port(preferred: int = 3000) -> int:
    """``preferred`` when nothing listens on it, else a port the kernel picks."""
    for port in (preferred, 0):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind (TIME_WAIT of a last run)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port on 127.0.0.1")


class Running:
    """A server process whose merged stdout/stderr is collected by a thread, read in steps."""

    def __init__(self, argv: list[str], cwd: Path) -> None:
        env = dict(os.environ, NO_COLOR="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.seen = 0
        self.changed = time.monotonic()
        self.lock = threading.Lock()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.lock:
                self.lines.append(ANSI.sub("", line.rstrip("\n")))
                self.changed = time.monotonic()

    def wait_for(self, pattern: str, timeout: float) -> None:
        """Until a line matching ``pattern`` appeared (RuntimeError with the output after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if any(re.search(pattern, line) for line in self.lines[self.seen:]):
                    return
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"no line matching {pattern!r} within {timeout} s:\n" + "\n".join(self.lines))

    def new_output(self, quiet: float = 0.6, timeout: float = 15.0) -> list[str]:
        """The lines printed since the last call, once the process has been quiet for ``quiet`` s
        (counted from this call at the earliest: a request's access line comes just after its answer)."""
        called = time.monotonic()
        deadline = called + timeout
        while time.monotonic() < deadline and time.monotonic() - max(self.changed, called) < quiet:
            time.sleep(0.05)
        with self.lock:
            out, self.seen = self.lines[self.seen:], len(self.lines)
        return out

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20.0) -> list[str]:
        """Send ``sig``, wait for the exit (SIGKILL to the group after ``timeout`` s), return the last lines."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        time.sleep(0.2)
        return self.new_output(quiet=0.1, timeout=1.0)


class Transcript:
    """Markdown built step by step: prose, then ``$ command`` blocks with their output."""

    def __init__(self, home: Path) -> None:
        self.home = str(home)
        self.parts: list[str] = []

    def clean(self, text: str) -> str:
        return text.replace(self.home, "~")

    def say(self, text: str) -> None:
        self.parts.append(text.strip() + "\n")

    def block(self, lines: list[str], lang: str = "console") -> None:
        body = "\n".join(self.clean(line) for line in lines).rstrip()
        self.parts.append(f"```{lang}\n{body}\n```\n")

    def text(self) -> str:
        return "\n".join(self.parts)


def run(argv: list[str], cwd: Path, timeout: float = 600.0) -> list[str]:
    """A command run to completion: its merged output lines (RuntimeError when it fails)."""
    env = dict(os.environ, NO_COLOR="1")
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    lines = [ANSI.sub("", line) for line in done.stdout.splitlines()]
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}:\n" + "\n".join(lines))
    return lines


def get(url: str, accept: str = "*/*") -> list[str]:
    """What ``curl -si URL`` shows, trimmed: the status line, the content type and the body."""
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, headers, body = response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        status, headers, body = exc.code, exc.headers, exc.read()
    lines: list[str] = [f"HTTP/1.1 {status}", f"content-type: {headers.get('content-type', '')}", ""]
    text: str = body.decode("utf-8", "replace")
    return lines + text.rstrip().splitlines()


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    if old not in text:
        raise RuntimeError(f"{path}: {old!r} not found (did the flask template change?)")
    path.write_text(text.replace(old, new, 1))


def session(home: Path) -> str:
    t = Transcript(home)
    t.say("""
# A first session with fnserve

This transcript was made by running `docs/tutorial.py` (`make tutorial`), which runs each command
below in a fresh folder and records what fnserve printed; only the folder's path is shortened to
`~`. It takes a new Flask project from `fnserve init` through `fnserve dev`, an edit, a mistake and
its fix, to a production build served by `fnserve start`.

## 1. Create a project
""")
    t.block(["$ fnserve init hello --template flask", *run([FNSERVE, "init", "hello", "--template", "flask"], home)])
    project = home / "hello"
    t.say("""
`--list` shows the other templates (handler, fastapi, django, sanic, mixed); `--layout edgeone`
writes the same project in EdgeOne's `cloud-functions/` layout. The function is an ordinary Flask
app in `api/index.py`, as Vercel expects it:
""")
    t.block((project / "api" / "index.py").read_text().splitlines(), "python")

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    t.say("""
## 2. Run it

`fnserve dev` reads `requirements.txt` (and the imports in the code), installs Flask into an
environment of its own under `.fnserve/` on the first run, prints the route table and serves:
""")
    dev = Running([FNSERVE, "dev", "--port", str(port)], project)
    try:
        dev.wait_for(r"http://127\.0\.0\.1:\d+", timeout=600)
        t.block([f"~/hello$ fnserve dev --port {port}", *dev.new_output()])
        t.say("In another terminal:")
        answer = get(f"{base}/api/hello")
        t.block([f"$ curl -i {base}/api/hello", *answer])
        t.say("The request shows up in `fnserve dev`'s terminal:")
        t.block(dev.new_output())

        t.say("""
## 3. Edit

Save a change to `api/index.py`: fnserve restarts only the functions the saved file affects.
""")
        source = project / "api" / "index.py"
        edit(source, 'message="Hello, world!"', 'message="Hello from my first edit!"')
        time.sleep(1.0)
        t.block(['# api/index.py: message="Hello, world!" -> message="Hello from my first edit!"', *dev.new_output()])
        t.block([f"$ curl -i {base}/api/hello", *get(f"{base}/api/hello")])
        dev.new_output()

        t.say("""
## 4. A mistake

A syntax error (a missing closing parenthesis) does not stop the server: the broken function
answers 500 with the error, named by file and line, and everything else keeps serving.
""")
        edit(source, 'kind="flask")', 'kind="flask"')
        time.sleep(1.0)
        t.block(["# api/index.py: the closing parenthesis of jsonify(...) deleted", *dev.new_output()])
        t.block([f"$ curl -i {base}/api/hello", *get(f"{base}/api/hello", "application/json")])
        t.block(dev.new_output())
        t.say("The static page in `public/` is still served:")
        t.block([f"$ curl -i {base}/", *get(f"{base}/")[:6], "..."])
        dev.new_output()

        t.say("""
## 5. The fix

Put the parenthesis back; the next request is served by the fixed code.
""")
        edit(source, 'kind="flask"\n', 'kind="flask")\n')
        time.sleep(1.0)
        t.block(["# api/index.py: parenthesis restored", *dev.new_output()])
        t.block([f"$ curl -i {base}/api/hello", *get(f"{base}/api/hello")])
        t.block(dev.new_output())
        t.say("Ctrl-C stops the server and its workers:")
        t.block(["^C", *dev.stop(signal.SIGINT)])
    finally:
        dev.stop(signal.SIGKILL)

    t.say("""
## 6. Build for production

`fnserve build` writes a self-contained build to `.fnserve/output/`: the manifest, the project's
files, a relocatable environment and a size report. `--target` renders the same build for another
engine (vercel, knative, kubernetes, container, lambda; see DEPLOY.md).
""")
    t.block(["~/hello$ fnserve build", *run([FNSERVE, "build"], project)])
    t.say("""
`fnserve start --from` serves the build without scanning or installing anything: instances per
function scaled with load, `maxDuration` and `memory` enforced, JSON access logs, graceful SIGTERM.
""")
    start = Running([FNSERVE, "start", "--from", ".fnserve/output", "--port", str(port)], project)
    try:
        start.wait_for(r"127\.0\.0\.1", timeout=120)
        time.sleep(0.5)
        t.block([f"~/hello$ fnserve start --from .fnserve/output --port {port}", *start.new_output()])
        t.block([f"$ curl -i {base}/api/items/42", *get(f"{base}/api/items/42")])
        t.block(start.new_output())
        t.say("SIGTERM (what a container engine sends) drains in-flight requests, then exits 0:")
        t.block(["$ kill -TERM <pid>", *start.stop(signal.SIGTERM)])
    finally:
        start.stop(signal.SIGKILL)
    t.say("""
## Next

- `fnserve routes` prints the route table, `fnserve config` every setting and where it came from,
  `fnserve deps` the merged requirements.
- http://127.0.0.1:3000/_fnserve/ is `fnserve dev`'s dashboard (routes, instances, live requests).
- docs/DEPLOY.md: the build targets; docs/SECURITY.md: what `fnserve start` isolates and its limits.
""")
    return t.text()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stdout", action="store_true", help="print the transcript instead of writing docs/TUTORIAL.md")
    args = parser.parse_args()
    # not under /tmp: functions may write there, so fnserve start would warn that the project is not read-only
    with tempfile.TemporaryDirectory(prefix="fnserve-tutorial-", dir="/var/tmp" if os.path.isdir("/var/tmp") else None) as tmp:
        text = session(Path(tmp))
    if args.stdout:
        sys.stdout.write(text)
    else:
        (HERE / "TUTORIAL.md").write_text(text)
        print(f"wrote {HERE / 'TUTORIAL.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
