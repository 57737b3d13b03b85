"""Acceptance of target ``lambda`` (issue 11): each generated zip, unzipped, served by AWS's own
runtime interface client (``awslambdaric`` from PyPI, pinned in the ``[test]`` extra) against a
local mock of the Lambda Runtime API, fed API Gateway REST v1, HTTP API v2 and ALB events for
each function kind (handler class, Flask/WSGI, FastAPI/ASGI, Lambda-style).

As on Lambda: the zip's folder is the task root (cwd, first on ``PYTHONPATH``); the runtime
client comes from a folder of its own (``/var/runtime`` on Lambda: here its installed files,
linked); the interpreter runs with ``-S``, so nothing of this venv's site-packages is visible
and Flask/FastAPI must come from the zip's ``_vendor/``. Every wait has a timeout; the runtime
processes are killed at the end.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from buildsupport import write_project
from lambdasupport import CHECKS, FILES, SOURCES, as_json, decode, event

from fnserve.build.exceptions import BuildError
from fnserve.build.manifest import read_manifest
from fnserve.build.output import build_output
from fnserve.build.targets.lambda_target import LambdaTarget, resolve_deps
from fnserve.config import load_config

RIC_DISTRIBUTIONS = ("awslambdaric", "simplejson", "snapshot-restore-py")
PREFIX = "/2018-06-01/runtime"


class MockRuntimeAPI:
    """The Lambda Runtime API (the parts a runtime client uses), on 127.0.0.1, port 0:
    ``GET /2018-06-01/runtime/invocation/next`` hands out queued events (with the request id,
    deadline and ARN headers); ``POST .../invocation/{id}/response`` and ``.../{id}/error`` and
    ``.../init/error`` record what the client sent. ``invoke(event)`` queues one event and waits
    (bounded) for its outcome."""

    def __init__(self) -> None:
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.results: dict[str, tuple[str, Any]] = {}
        self.init_error: Any = None
        self.done = threading.Condition()
        self.stopping = threading.Event()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _reply(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                if self.path != PREFIX + "/invocation/next":
                    self._reply(404)
                    return
                while not api.stopping.is_set():
                    try:
                        request_id, payload = api.events.get(timeout=0.2)
                    except queue.Empty:
                        continue
                    self._reply(200, json.dumps(payload).encode(), {
                        "Content-Type": "application/json",
                        "Lambda-Runtime-Aws-Request-Id": request_id,
                        "Lambda-Runtime-Deadline-Ms": str(int(time.time() * 1000) + 60_000),
                        "Lambda-Runtime-Invoked-Function-Arn": "arn:aws:lambda:us-east-1:000000000000:function:test",
                        "Lambda-Runtime-Trace-Id": "Root=1-00000000-000000000000000000000000;Sampled=0",
                    })
                    return

            def do_POST(self) -> None:
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                parts = self.path[len(PREFIX):].strip("/").split("/")
                if parts == ["init", "error"]:
                    api.init_error = data.decode("utf-8", "replace")
                elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                    with api.done:
                        api.results[parts[1]] = (parts[2], json.loads(data) if data else None)
                        api.done.notify_all()
                else:
                    self._reply(404)
                    return
                self._reply(202, b'{"status":"OK"}', {"Content-Type": "application/json"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = "127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def invoke(self, payload: Any, proc: subprocess.Popen[bytes], log: Path, timeout: float = 30.0) -> Any:
        request_id = str(uuid.uuid4())
        self.events.put((request_id, payload))
        deadline = time.monotonic() + timeout
        with self.done:
            while request_id not in self.results:
                if proc.poll() is not None or self.init_error is not None or time.monotonic() > deadline:
                    raise AssertionError(f"no response from the runtime client (exit {proc.poll()}, init error "
                                         f"{self.init_error}):\n{log.read_text(errors='replace')[-4000:]}")
                self.done.wait(0.2)
        kind, result = self.results.pop(request_id)
        assert kind == "response", f"the handler failed: {result}\n{log.read_text(errors='replace')[-4000:]}"
        return result

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(scope="module")
def runtime_dir(tmp_path_factory) -> Path:
    """``/var/runtime``: the installed files of awslambdaric and its dependencies, linked."""
    folder = tmp_path_factory.mktemp("var-runtime")
    for name in RIC_DISTRIBUTIONS:
        dist = importlib.metadata.distribution(name)
        for top in sorted({Path(str(f)).parts[0] for f in dist.files or () if not str(f).startswith("..")}):
            if top != "__pycache__" and not (folder / top).exists():
                (folder / top).symlink_to(Path(str(dist.locate_file(top))))
    return folder


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The project built with its real env (Flask, FastAPI) and target lambda."""
    project = write_project(tmp_path_factory.mktemp("lamric") / "p", FILES)
    config = load_config(project, {}, {}, mode="build")
    result = build_output(config, targets=("lambda",), say=lambda _line: None)
    return result.output


@pytest.fixture(scope="module")
def containers(built, runtime_dir, tmp_path_factory):
    """function id → (mock API, runtime client process, its log, task root): one "container" per
    function, all started at once, killed at the end."""
    template = json.loads((built / "lambda" / "template.yaml").read_text())
    started = {}
    try:
        for resource in template["Resources"].values():
            props = resource["Properties"]
            root = tmp_path_factory.mktemp("task")
            with zipfile.ZipFile(built / "lambda" / props["CodeUri"]) as zf:
                zf.extractall(root)
            function_id = json.loads((root / "fnserve_lambda.json").read_text())["function"]["id"]
            api = MockRuntimeAPI()
            log = root.parent / (root.name + ".log")
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
                   "AWS_LAMBDA_RUNTIME_API": api.address, "_HANDLER": props["Handler"],
                   "LAMBDA_TASK_ROOT": str(root), "PYTHONPATH": f"{root}{os.pathsep}{runtime_dir}",
                   "AWS_LAMBDA_FUNCTION_NAME": "test", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props["MemorySize"]),
                   "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST", "AWS_REGION": "us-east-1",
                   "PYTHONDONTWRITEBYTECODE": "1"}
            with open(log, "wb") as out:
                proc = subprocess.Popen([sys.executable, "-S", "-m", "awslambdaric", props["Handler"]], cwd=root,
                                        env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            started[function_id] = (api, proc, log, root)
        yield started
    finally:
        for api, proc, _log, _root in started.values():
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
            api.close()


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize("function_id", sorted(CHECKS))
def test_awslambdaric_serves_each_kind_and_event_source(containers, function_id, source):
    api, proc, log, _root = containers[function_id]
    CHECKS[function_id](lambda payload: api.invoke(payload, proc, log), source)


def test_dependencies_come_from_the_zip(containers):
    """Flask and FastAPI are imported from the zip's _vendor/ (resolved for Linux x86_64)."""
    for function_id, path in (("api/flask_app.py", "/api/flask_app/items/1"), ("api/fastapi_app.py", "/api/fastapi_app/state")):
        api, proc, log, root = containers[function_id]
        _, _, body = decode("v2", api.invoke(event("v2", "GET", path), proc, log))
        assert Path(as_json(body)["where"]).is_relative_to(root / "_vendor")


def test_environment_from_dotenv(containers):
    """.env variables reach the function, as under fnserve start."""
    api, proc, log, _root = containers["api/event.py"]
    _, _, body = decode("v2", api.invoke(event("v2", "GET", "/api/event"), proc, log))
    assert as_json(body)["greeting"] == "from-dotenv"


def test_a_dependency_lambda_cannot_install_is_named(built, tmp_path):
    manifest = read_manifest(built)
    env = next(iter(manifest.envs.values()))
    from dataclasses import replace

    broken = replace(env, requirements=(*env.requirements, "fnserve-no-such-package-zz9"))
    with pytest.raises(BuildError, match="`fnserve-no-such-package-zz9` cannot be installed for AWS Lambda"):
        resolve_deps(broken, built, tmp_path / "deps", "3.11", dict(os.environ))
    before = (built / "lambda" / "template.yaml").read_bytes()
    with pytest.raises(BuildError) as info:
        LambdaTarget().render(built, replace(manifest, envs={env.key: broken}), lambda _line: None)
    assert info.value.step == "lambda" and info.value.exit_code == 2
    assert "fnserve-no-such-package-zz9" in info.value.message
    assert (built / "lambda" / "template.yaml").read_bytes() == before  # the previous rendering is intact
    assert not list(built.glob(".lambda*"))


def test_same_answers_as_fnserve_start(built, containers):
    """The zips answer as ``fnserve start --from`` does for the same requests (status, content
    type, body; JSON compared without the keys that name the machine: host, import location)."""
    import httpx
    from buildsupport import serving

    requests = [("GET", "/api/users/42?y=2"), ("GET", "/api/flask_app/items/7?q=1&q=2"),
                ("GET", "/api/fastapi_app/state?q=x"), ("GET", "/api/fastapi_app/bin"), ("GET", "/api/event?q=1"),
                ("POST", "/api/event")]
    with serving("--from", str(built)) as url:
        expected = []
        for method, target in requests:  # one request each: no cookie jar carried between them
            resp = httpx.request(method, url + target, timeout=30)
            expected.append((method, target, resp.status_code, resp.headers.get("content-type"), resp.content))

    def comparable(content_type: str | None, body: bytes) -> Any:
        if content_type and "json" in content_type:
            data = as_json(body)
            return {k: v for k, v in data.items() if k not in ("where", "host", "remaining")}  # machine-specific
        return body

    owner = {"users": "api/users/[id].py", "flask_app": "api/flask_app.py", "fastapi_app": "api/fastapi_app.py",
             "event": "api/event.py"}
    for method, target, status, content_type, body in expected:
        path, _, query = target.partition("?")
        pairs = [tuple(p.split("=", 1)) for p in query.split("&") if p]
        api, proc, log, _root = containers[owner[path.split("/")[2]]]
        for source in ("v1", "v2", "alb-multi"):
            got_status, headers, got_body = decode(source, api.invoke(event(source, method, path, pairs), proc, log))
            assert (got_status, headers.get("content-type", [None])[0]) == (status, content_type), (source, target)
            assert comparable(content_type, got_body) == comparable(content_type, body), (source, target)


def test_a_function_that_fails_to_import_is_an_init_error(runtime_dir, tmp_path):
    """An import error is reported by the runtime client as an init error (Lambda's
    ``Runtime.*`` init failure), naming the function and the exception; the process exits."""
    project = write_project(tmp_path / "p", {"api/broken.py": "raise RuntimeError('boom at import')\n"
                                             "def handler(event, context):\n    return 'never'\n"})
    build_output(load_config(project, {"install": False}, {}, mode="build"), targets=("lambda",))
    root = tmp_path / "task"
    with zipfile.ZipFile(project / ".fnserve/output/lambda/functions/api-broken.zip") as zf:
        zf.extractall(root)
    api = MockRuntimeAPI()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "AWS_LAMBDA_RUNTIME_API": api.address,
           "PYTHONPATH": f"{root}{os.pathsep}{runtime_dir}", "LAMBDA_TASK_ROOT": str(root)}
    proc = subprocess.Popen([sys.executable, "-S", "-m", "awslambdaric", "fnserve_lambda.handler"], cwd=root, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        api.close()
    assert proc.returncode != 0
    error = json.loads(api.init_error)
    assert "api/broken.py: importing the module raised RuntimeError: boom at import" in error["errorMessage"], error
