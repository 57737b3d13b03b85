"""The lambda adapter: an AWS-Lambda-style ``handler(event, context)`` (including
``handler = Mangum(app)``) served as one ASGI 3 application (SPEC §2, §4).

The request becomes an API Gateway HTTP API **v2** event (payload format 2.0): ``version``
"2.0", ``routeKey`` "$default", ``rawPath`` (percent-encoded, byte-exact), ``rawQueryString``,
``headers`` (lowercase names, repeated values comma-joined, ``cookie`` moved to ``cookies``),
``queryStringParameters`` (repeated values comma-joined), ``pathParameters`` (route params),
``requestContext`` (``http`` {method, path, protocol, sourceIp, userAgent}, ``requestId``,
``time``, ``timeEpoch`` ms, ``stage`` "$default", ``domainName``), ``body`` (base64 when it is
not UTF-8 text) and ``isBase64Encoded``. The handler runs in a pool thread that has its own event
loop (Mangum runs the ASGI app on it). The result maps back: a dict with ``statusCode``,
``headers``, ``multiValueHeaders``, ``cookies`` (each its own ``Set-Cookie``), ``body``,
``isBase64Encoded``; a dict without ``statusCode`` → 200 JSON; a string → 200 text.
"""

import asyncio
import base64
import json
import sys
import time
import traceback
import uuid
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import parse_qsl, quote

from .asgitypes import Receive, Scope, Send
from .bridge import refuse_declared_oversize, refuse_non_http, send_error
from .pool import InFlight

TEXT_TYPES = ("text/", "json", "xml", "javascript", "x-www-form-urlencoded")


def thread_event_loop() -> None:
    """Thread-pool initializer: give each pool thread its own event loop (Mangum calls
    ``asyncio.get_event_loop()`` in the calling thread)."""
    asyncio.set_event_loop(asyncio.new_event_loop())


class LambdaContext:
    """The ``context`` argument (the attributes of AWS's Python runtime context object).
    ``max_duration``: seconds until ``get_remaining_time_in_millis()`` reaches 0; ``memory``: MB."""

    def __init__(self, function_name: str, request_id: str, max_duration: float, memory: int) -> None:
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = "arn:aws:lambda:local:000000000000:function:" + function_name
        self.memory_limit_in_mb = str(memory)
        self.aws_request_id = request_id
        self.log_group_name = "/aws/lambda/" + function_name
        self.log_stream_name = time.strftime("%Y/%m/%d") + "/[$LATEST]" + request_id.replace("-", "")
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + max_duration

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def build_event(scope: Scope, body: bytes, request_id: str, now: float) -> Dict[str, Any]:
    """The API Gateway HTTP API v2 event for an ASGI HTTP ``scope`` and its full ``body``;
    ``now``: epoch seconds."""
    headers: Dict[str, str] = {}
    cookies: List[str] = []
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
            continue
        headers[name] = headers[name] + "," + value if name in headers else value
    raw_path = (scope.get("raw_path") or quote(scope.get("path") or "/").encode("ascii")).decode("latin-1")
    query = scope.get("query_string", b"").decode("latin-1")
    client = scope.get("client") or ("127.0.0.1", 0)
    event: Dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "fnserve",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": headers.get("host", "localhost").split(".")[0],
            "http": {
                "method": scope["method"],
                "path": raw_path,
                "protocol": "HTTP/" + scope.get("http_version", "1.1"),
                "sourceIp": str(client[0]),
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
            "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }
    if cookies:
        event["cookies"] = cookies
    if query:
        params: Dict[str, str] = {}
        for key, value in parse_qsl(query, keep_blank_values=True):
            params[key] = params[key] + "," + value if key in params else value
        event["queryStringParameters"] = params
    route_params = scope.get("fnserve.route_params")
    if route_params:
        event["pathParameters"] = dict(route_params)
    if body:
        content_type = headers.get("content-type", "")
        text: Optional[str] = None
        if any(t in content_type for t in TEXT_TYPES) or not content_type:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                text = None
        if text is None:
            event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode("ascii"), True
        else:
            event["body"] = text
    return event


def map_response(result: Any) -> Tuple[int, List[Tuple[bytes, bytes]], bytes]:
    """``(status, headers, body)`` from what the handler returned. Raises ``TypeError`` for a
    value that is neither a dict nor a string."""
    if isinstance(result, (str, bytes)):
        body = result.encode("utf-8") if isinstance(result, str) else result
        return 200, [(b"content-type", b"text/plain; charset=utf-8")], body
    if not isinstance(result, dict):
        raise TypeError("the lambda handler returned %s, expected a dict with statusCode or a string" % type(result).__name__)
    if "statusCode" not in result:
        return 200, [(b"content-type", b"application/json")], json.dumps(result).encode("utf-8")
    headers: List[Tuple[bytes, bytes]] = []
    single = result.get("headers") or {}
    multi = result.get("multiValueHeaders") or {}
    for name, value in single.items():
        if name.lower() not in {k.lower() for k in multi}:
            headers.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
    for name, values in multi.items():
        for value in values if isinstance(values, (list, tuple)) else [values]:
            headers.append((name.lower().encode("latin-1"), str(value).encode("latin-1")))
    for cookie in result.get("cookies") or ():
        headers.append((b"set-cookie", str(cookie).encode("latin-1")))
    raw = result.get("body")
    if raw is None:
        body = b""
    elif result.get("isBase64Encoded"):
        body = base64.b64decode(raw)
    elif isinstance(raw, bytes):
        body = raw
    else:
        body = (raw if isinstance(raw, str) else json.dumps(raw)).encode("utf-8")
    return int(result["statusCode"]), headers, body


class LambdaAdapter:
    """ASGI 3 app calling ``handler(event, context)`` in ``executor`` threads (created with
    ``thread_event_loop`` as initializer). ``body_limit`` bytes; ``max_duration`` s; ``memory`` MB."""

    def __init__(
        self, handler: Any, *, executor: Any, body_limit: int = 0, label: str = "?",
        max_duration: float = 300.0, memory: int = 1024,
    ) -> None:
        self.handler = handler
        self.executor = executor
        self.body_limit = body_limit
        self.label = label
        self.function_name = label.rsplit(".py", 1)[0].replace("/", "-").strip("-") or "function"
        self.max_duration = max_duration
        self.memory = memory
        self.inflight = InFlight()

    async def shutdown(self, timeout: float = 30.0) -> None:
        await self.inflight.wait(timeout)

    async def _read_body(self, receive: Receive) -> Optional[bytes]:
        """The whole request body, or None when it goes over ``body_limit``."""
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if self.body_limit and total > self.body_limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if await refuse_non_http(scope, receive, send) or await refuse_declared_oversize(scope, send, self.body_limit):
            return
        with self.inflight:
            body = await self._read_body(receive)
            if body is None:
                await send_error(send, 413, "body_too_large", "request body is over the limit of %d bytes" % self.body_limit)
                return
            request_id = str(uuid.uuid4())
            event = build_event(scope, body, request_id, time.time())
            context = LambdaContext(self.function_name, request_id, self.max_duration, self.memory)
            loop = asyncio.get_running_loop()
            try:
                result = await self.executor.run(loop, self.handler, event, context)
                status, headers, out = map_response(result)
            except Exception as exc:
                sys.stderr.write("fnserve: %s: the lambda handler failed:\n%s" % (self.label, traceback.format_exc()))
                await send_error(send, 500, "function_error", "the function raised %s: %s" % (type(exc).__name__, exc))
                return
            if not any(name == b"content-length" for name, _ in headers):
                headers.append((b"content-length", str(len(out)).encode("ascii")))
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else out})
