"""The Lambda entry module: ``fnserve_lambda.handler(event, context)`` (issue 11, target ``lambda``).

``fnserve build --target lambda`` copies this file into each function's zip as
``fnserve_lambda.py``, next to ``fnserve_lambda.json`` (the function and its routes),
``_fnserve_runtime/`` (fnserve's stdlib runtime, vendored as is) and ``_vendor/`` (the function's
dependencies resolved for Lambda). Like the runtime it runs on Lambda's Python (3.9–3.13):
stdlib only, nothing of fnserve imported except the vendored runtime.

Per container (cold start, once): the config is read, ``_vendor/`` added as a site directory, the
function loaded with the runtime's ``load_function`` (so handler classes, WSGI, ASGI and
Lambda-style functions all work, exactly as under ``fnserve start``), its ASGI lifespan started.
Per invocation: the event becomes an ASGI 3.0 HTTP scope, the function's ASGI app runs on the
container's event loop, and the response is shaped for the event's source:

- API Gateway REST (payload 1.0, ``httpMethod`` + ``requestContext.stage``): ``headers`` and
  ``multiValueHeaders`` (repeated ones, ``Set-Cookie`` included), query from
  ``multiValueQueryStringParameters`` (decoded by API Gateway, so re-encoded here).
- API Gateway HTTP API / Function URL (payload 2.0, ``version: "2.0"``): ``rawPath`` (a named
  stage's ``/<stage>`` prefix removed), ``rawQueryString``, ``cookies`` ↔ ``Cookie`` /
  ``Set-Cookie``; repeated response headers comma-joined.
- ALB (``requestContext.elb``): query values arrive percent-encoded and are kept as they are;
  the response uses ``multiValueHeaders`` when the request did (multi-value headers on the target
  group), else ``headers`` with repeated names case-mutated (``set-cookie``, ``Set-cookie``...) so
  every cookie survives; ``statusDescription`` ``"200 OK"``.

Bodies: ``isBase64Encoded`` requests are decoded; a response body is text when its content type is
textual (``text/*``, JSON, XML, JavaScript, form) and valid UTF-8 with no ``Content-Encoding``,
else base64 with ``isBase64Encoded: true``.

Routing inside the zip is the function's own routes from the build manifest, as ``fnserve
start`` matches them: a path no route of this function matches answers 404 (fnserve's JSON
error); route parameters go to ``scope["fnserve.route_params"]`` and, for the Vercel layout, are
appended to the query string (``?id=42``); an EdgeOne framework mount gets its prefix as
``root_path``. The scope also carries ``aws.event`` and ``aws.context`` (as Mangum does).
A function that raises answers 500 (fnserve's JSON error, traceback on stderr → CloudWatch).
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
import os
import site
import sys
import traceback
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from fnserve.runtime.asgitypes import Message, Scope

CONFIG_NAME = "fnserve_lambda.json"
RUNTIME_PACKAGE = "_fnserve_runtime"
VENDOR_DIR = "_vendor"
#: Lambda's limit for a synchronous invocation's payload (bytes): the body can be no larger.
BODY_LIMIT = 6 * 1024 * 1024
TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded", "ecmascript")
_SAFE_PATH = "/%:@!$&'()*+,;=-._~"


class EventError(ValueError):
    """The event is not an HTTP event this handler knows (API Gateway REST or HTTP API, Function
    URL, ALB). The invocation fails with this message (Lambda reports it to the caller)."""


# -- events → ASGI -----------------------------------------------------------------------------


def event_source(event: Any) -> str:
    """``"v2"`` (HTTP API payload 2.0, Function URL), ``"alb"`` or ``"v1"`` (REST API payload
    1.0). Raises ``EventError`` for anything else (a queue message, a schedule...)."""
    if not isinstance(event, dict):
        raise EventError("fnserve_lambda.handler serves HTTP events; got %s" % type(event).__name__)
    context = event.get("requestContext") or {}
    if event.get("version") == "2.0" and "rawPath" in event:
        return "v2"
    if "elb" in context:
        return "alb"
    if "httpMethod" in event:
        return "v1"
    raise EventError(
        "fnserve_lambda.handler serves API Gateway (REST, HTTP API), Function URL and ALB events; "
        "this event has keys %s" % ", ".join(sorted(event)[:12])
    )


def _header_list(single: Any, multi: Any) -> list[tuple[bytes, bytes]]:
    out: list[tuple[bytes, bytes]] = []
    if multi:
        for name, values in multi.items():
            for value in values or ():
                out.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
    elif single:
        for name, value in single.items():
            if value is not None:
                out.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
    return out


def _query(single: Any, multi: Any, encoded: bool) -> str:
    """A query string from API Gateway v1 / ALB parameters; ``encoded``: values arrive
    percent-encoded (ALB) and are joined as they are, else they are quoted (REST API)."""
    pairs: list[tuple[str, str]] = []
    if multi:
        pairs = [(k, v) for k, values in multi.items() for v in values or ()]
    elif single:
        pairs = [(k, v) for k, v in single.items() if v is not None]
    if encoded:
        return "&".join("%s=%s" % (k, v) for k, v in pairs)
    return "&".join("%s=%s" % (quote(k, safe=""), quote(v, safe="")) for k, v in pairs)


def request_of(event: dict[str, Any]) -> dict[str, Any]:
    """The HTTP request of an event: ``source`` (``event_source``), ``method``, ``raw_path``
    (str, percent-encoded), ``query`` (str), ``headers`` [(bytes, bytes)] (lowercase names),
    ``body`` bytes (a ``Content-Length`` header is added when the event has none: the body is
    whole), ``client`` (ip, port). Raises ``EventError``."""
    source = event_source(event)
    context = event.get("requestContext") or {}
    if source == "v2":
        http = context.get("http") or {}
        method = http.get("method") or "GET"
        raw_path = event.get("rawPath") or "/"
        stage = context.get("stage") or "$default"
        if stage != "$default" and (raw_path == "/" + stage or raw_path.startswith("/" + stage + "/")):
            raw_path = raw_path[len(stage) + 1:] or "/"
        query = event.get("rawQueryString") or ""
        headers = _header_list(event.get("headers"), None)
        cookies = event.get("cookies")
        if cookies:
            headers = [h for h in headers if h[0] != b"cookie"]
            headers.append((b"cookie", "; ".join(cookies).encode("latin-1")))
        ip = http.get("sourceIp") or "127.0.0.1"
    else:
        method = event.get("httpMethod") or "GET"
        raw_path = event.get("path") or "/"
        headers = _header_list(event.get("headers"), event.get("multiValueHeaders"))
        query = _query(event.get("queryStringParameters"), event.get("multiValueQueryStringParameters"),
                       encoded=source == "alb")
        if source == "v1":
            ip = (context.get("identity") or {}).get("sourceIp") or "127.0.0.1"
        else:
            forwarded = next((v.decode("latin-1") for k, v in headers if k == b"x-forwarded-for"), "")
            ip = forwarded.split(",")[0].strip() or "127.0.0.1"
    raw = event.get("body")
    if raw is None:
        body = b""
    elif event.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    else:
        body = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
    if body and not any(k in (b"content-length", b"transfer-encoding") for k, _ in headers):
        headers.append((b"content-length", str(len(body)).encode("ascii")))  # the whole body is here
    return {"source": source, "method": method.upper(), "raw_path": raw_path, "query": query,
            "headers": headers, "body": body, "client": (ip, 0)}


def _split(path: str) -> list[str]:
    trimmed = (path[1:] if path.startswith("/") else path).rstrip("/")
    return trimmed.split("/") if trimmed else []


def match_route(routes: list[dict[str, Any]], path: str) -> tuple[dict[str, str], str] | None:
    """The first of ``routes`` (``{"segments": [[kind, value]], "mount": bool, "root_path": str}``,
    in fnserve's priority order) matching the decoded ``path``: ``(params, root_path)``, or None.
    Segment kinds as ``fnserve.project.Segment``: literal, param (one non-empty segment),
    catchall (one or more, joined with ``/``), optional (zero or more); a mount also matches every
    path below it. Trailing slashes are ignored."""
    found = find_route(routes, path)
    return None if found is None else (found[1], found[0].get("root_path") or "")


def find_route(routes: list[dict[str, Any]], path: str) -> tuple[dict[str, Any], dict[str, str]] | None:
    """``match_route`` that also gives the route matched: ``(route, params)``, or None."""
    parts = _split(path)
    for route in routes:
        params = _match(route["segments"], bool(route.get("mount")), parts)
        if params is not None:
            return route, params
    return None


def query_keys(segments: list[list[str]]) -> dict[str, str]:
    """Parameter name → the query key Vercel gives it (``fnserve.project.routes.query_key``:
    ``...slug`` for ``[...slug]``, ``[...slug]`` for ``[[...slug]]``; this module is stdlib only)."""
    return {value: "..." + value if kind == "catchall" else "[...%s]" % value
            for kind, value in segments if kind in ("catchall", "optional")}


def _match(segments: list[list[str]], mount: bool, parts: list[str]) -> dict[str, str] | None:
    params: dict[str, str] = {}
    for i, (kind, value) in enumerate(segments):
        if kind == "literal":
            if i >= len(parts) or parts[i] != value:
                return None
        elif kind == "param":
            if i >= len(parts) or not parts[i]:
                return None
            params[value] = parts[i]
        elif kind == "catchall":
            if i >= len(parts):
                return None
            params[value] = "/".join(parts[i:])
            return params
        else:  # optional: zero or more
            params[value] = "/".join(parts[i:])
            return params
    return params if len(parts) == len(segments) or mount else None


def build_scope(request: dict[str, Any], params: dict[str, str], root_path: str, layout: str,
                keys: dict[str, str] | None = None) -> Scope:
    """The ASGI 3.0 HTTP scope for ``request`` (``request_of``) matched with route ``params``:
    what ``fnserve start`` gives the function (``fnserve.server.app.function_scope``)."""
    raw_path = request["raw_path"]
    query = request["query"]
    if layout == "vercel" and params:
        keys = keys or {}
        extra = "&".join("%s=%s" % (quote(keys.get(k, k), safe="[]"), quote(v, safe="")) for k, v in params.items())
        query = query + "&" + extra if query else extra
    headers = request["headers"]
    found = {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}
    host = found.get("host", "localhost").split(":")[0]
    scheme = found.get("x-forwarded-proto", "https").split(",")[0].strip() or "https"
    try:
        port = int(found.get("x-forwarded-port", "").split(",")[0] or (443 if scheme == "https" else 80))
    except ValueError:
        port = 443
    return {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
        "method": request["method"], "scheme": scheme, "path": unquote(raw_path),
        "raw_path": quote(raw_path, safe=_SAFE_PATH).encode("ascii"), "root_path": root_path,
        "query_string": query.encode("latin-1"), "headers": list(headers),
        "client": request["client"], "server": (host, port), "fnserve.route_params": dict(params),
    }


# -- ASGI → responses ----------------------------------------------------------------------------


def _is_text(headers: list[tuple[str, str]], body: bytes) -> str | None:
    ctype = next((v for k, v in headers if k.lower() == "content-type"), "").lower()
    if any(k.lower() == "content-encoding" for k, _ in headers):
        return None
    if ctype and not any(t in ctype for t in TEXT_TYPES):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _casings(name: str) -> list[str]:
    """Distinct spellings of ``name`` differing in case only (``set-cookie``, ``Set-cookie``...)."""
    out = [name.lower()]
    letters = [i for i, c in enumerate(name) if c.isalpha()]
    for n in range(1, 2 ** len(letters)):
        chars = list(name.lower())
        for bit, i in enumerate(letters):
            if n >> bit & 1:
                chars[i] = chars[i].upper()
        out.append("".join(chars))
    return out


def lambda_response(source: str, status: int, raw_headers: list[tuple[bytes, bytes]], body: bytes,
                    multi_value: bool = False) -> dict[str, Any]:
    """The Lambda result for ``source`` (``event_source``) from an HTTP response: ``status``,
    ``raw_headers`` (ASGI pairs), ``body``. ``multi_value``: the ALB request came with
    ``multiValueHeaders`` (the response must use them too). Shapes: see the module docstring."""
    headers = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in raw_headers]
    text = _is_text(headers, body)
    out: dict[str, Any] = {"statusCode": status}
    grouped: dict[str, list[str]] = {}
    for name, value in headers:
        grouped.setdefault(name, []).append(value)
    if source == "v2":
        cookies = grouped.pop("set-cookie", [])
        out["headers"] = {name: ",".join(values) for name, values in grouped.items()}
        if cookies:
            out["cookies"] = cookies
    elif source == "v1":
        out["headers"] = {name: values[0] for name, values in grouped.items() if len(values) == 1}
        out["multiValueHeaders"] = {name: values for name, values in grouped.items() if len(values) > 1}
    else:
        try:
            phrase = HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        out["statusDescription"] = ("%d %s" % (status, phrase)).strip()
        if multi_value:
            out["multiValueHeaders"] = grouped
        else:
            single: dict[str, str] = {}
            for name, values in grouped.items():
                for value, spelled in zip(values, _casings(name)):
                    single[spelled] = value
            out["headers"] = single
    out["body"] = text if text is not None else base64.b64encode(body).decode("ascii")
    out["isBase64Encoded"] = text is None
    return out


def error_response(status: int, code: str, message: str) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """fnserve's JSON error (``{"error": {"code", "message"}}``, SPEC §3.5) as (status, headers, body)."""
    body = json.dumps({"error": {"code": code, "message": message}}).encode("utf-8")
    return status, [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())], body


async def run_asgi(app: Any, scope: Scope, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    """Run the ASGI ``app`` for one HTTP request with the whole ``body``; returns (status,
    headers, body) of its response. ``receive`` gives the body once, then waits for the response
    to finish before answering ``http.disconnect`` (so streaming responses are not cut short).
    Raises what the app raises; a RuntimeError when it returns without starting a response."""
    sent: list[Message] = []
    done = asyncio.Event()
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    try:
        await app(scope, receive, send)
    finally:
        done.set()
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    if start is None:
        raise RuntimeError("the application returned without sending a response")
    chunks = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return int(start["status"]), [(bytes(k), bytes(v)) for k, v in start.get("headers") or ()], chunks


# -- the function in its container -----------------------------------------------------------------


class LambdaFunction:
    """One fnserve function served to Lambda events. ``app``: its ASGI app (a ``LoadedFunction``
    of the runtime's loader, or any ASGI 3 callable in tests); ``routes``: its routes (see
    ``match_route``); ``layout``: ``"vercel" | "edgeone" | "app"``; ``label``: its id for messages.
    ``invoke(event, context)`` → the Lambda result dict; the first call runs the app's lifespan
    startup (``startup()``), once per container, on the container's own event loop."""

    def __init__(self, app: Any, routes: list[dict[str, Any]], layout: str, label: str = "function",
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        self.app = app
        self.routes = routes
        self.layout = layout
        self.label = label
        self.loop = loop or asyncio.new_event_loop()
        self.started = False

    def startup(self) -> None:
        """Run the app's lifespan startup (``app.startup()`` when it has one) once."""
        if self.started:
            return
        self.started = True
        start = getattr(self.app, "startup", None)
        if start is not None:
            self.loop.run_until_complete(start())

    def close(self, timeout: float = 5.0) -> None:
        """Stop: the app's ``shutdown(timeout)`` (in-flight work, then ASGI lifespan shutdown)
        when it has one, then close the loop. Lambda itself freezes and discards containers;
        this is for tests and local runs."""
        stop = getattr(self.app, "shutdown", None)
        if self.started and stop is not None:
            self.loop.run_until_complete(stop(timeout))
        self.loop.close()

    def invoke(self, event: Any, context: Any = None) -> dict[str, Any]:
        """Serve one event; raises ``EventError`` for a non-HTTP event."""
        self.startup()
        request = request_of(event)
        return self.loop.run_until_complete(self._serve(request, event, context))

    async def _serve(self, request: dict[str, Any], event: Any, context: Any) -> dict[str, Any]:
        multi = request["source"] == "alb" and bool(event.get("multiValueHeaders"))
        path = unquote(request["raw_path"])
        found = find_route(self.routes, path)
        if found is None:
            status, headers, body = error_response(404, "NOT_FOUND", "%s does not serve %s" % (self.label, path))
            return lambda_response(request["source"], status, headers, body, multi)
        route, params = found
        scope = build_scope(request, params, route.get("root_path") or "", self.layout, query_keys(route["segments"]))
        scope["aws.event"], scope["aws.context"] = event, context
        try:
            status, headers, body = await run_asgi(self.app, scope, request["body"])
        except Exception as exc:
            sys.stderr.write("fnserve: %s failed:\n%s" % (self.label, traceback.format_exc()))
            status, headers, body = error_response(
                500, "FUNCTION_INVOCATION_FAILED", "the function raised %s: %s" % (type(exc).__name__, exc))
        if request["method"] == "HEAD":
            body = b""
        return lambda_response(request["source"], status, headers, body, multi)


def spec_of(config: dict[str, Any], root: str) -> dict[str, Any]:
    """The runtime loader's function spec (``_fnserve_runtime.loader.load_function``) for the
    ``function`` of ``config`` (``fnserve_lambda.json``), with paths under ``root`` (the zip's
    folder: ``LAMBDA_TASK_ROOT``)."""
    fn = config["function"]
    return {
        "id": fn["id"], "path": os.path.join(root, fn["id"]), "module": fn["module"], "attr": fn["attr"],
        "kind": fn["kind"], "layout": fn["layout"], "project_root": root,
        "import_roots": [root if r == "." else os.path.join(root, r) for r in fn["import_roots"]],
        "body_limit": BODY_LIMIT, "max_duration": fn.get("max_duration"), "memory": fn.get("memory"),
    }


def load(root: str, load_function: Callable[[dict[str, Any]], Any] | None = None) -> LambdaFunction:
    """The ``LambdaFunction`` of the zip unpacked at ``root``: reads ``fnserve_lambda.json``, sets
    its ``environment`` variables not already set (as ``fnserve start`` gives them to the
    function's process; variables configured on the Lambda function take precedence), adds
    ``_vendor/`` as a site directory (after the function's own import roots, as its env's
    site-packages come after them under ``fnserve start``), loads the function with
    ``load_function`` (default: the vendored runtime's). Raises the loader's ``LoadError``."""
    with open(os.path.join(root, CONFIG_NAME), encoding="utf-8") as f:
        config = json.load(f)
    for name, value in (config.get("environment") or {}).items():
        os.environ.setdefault(name, value)  # the function's process environment; Lambda's own settings win
    vendor = os.path.join(root, VENDOR_DIR)
    if os.path.isdir(vendor) and vendor not in sys.path:
        site.addsitedir(vendor)
    if load_function is None:
        load_function = importlib.import_module(RUNTIME_PACKAGE + ".loader").load_function
    loaded = load_function(spec_of(config, root))
    fn = config["function"]
    return LambdaFunction(loaded.app, config["routes"], fn["layout"], fn["id"])


_FUNCTION: LambdaFunction | None = None


def container() -> LambdaFunction:
    """This container's function (loaded and started on first use; Lambda keeps it between
    invocations of a warm container). The one module-level state: Lambda's init phase model."""
    global _FUNCTION
    if _FUNCTION is None:
        root = os.path.dirname(os.path.abspath(__file__))
        os.chdir(root)  # as under `fnserve start`: the function runs in its project folder
        function = load(root)
        function.startup()
        _FUNCTION = function
    return _FUNCTION


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda handler (``Handler: fnserve_lambda.handler``): serves ``event`` (see the module
    docstring) with this container's function."""
    return container().invoke(event, context)


if __name__ == "fnserve_lambda" and os.path.isfile(os.path.join(os.path.dirname(os.path.abspath(__file__)), CONFIG_NAME)):
    container()  # cold start in Lambda's init phase: import the function, run its lifespan startup
