"""Responses for the errors fnserve itself produces (SPEC §3.5).

Every error is one of the statuses below, with a JSON body ``{"error": {"code", "message",
"request_id"}}`` (``request_id`` for 5xx answers when the request has one — the ``x-request-id``
the function saw and the client got as ``x-fnserve-request-id`` — so a person can find the log
lines; plus ``"detail"``, a traceback or the offending
file's problem, in dev), or an HTML page when the client is a browser (``Accept`` contains
``text/html``) and the server runs in dev mode. In production (``dev=False``) the message of an
error that may carry the function's own data (its exception's text, its load error) is replaced
by ``FnserveError.public_message``; the text and the traceback are in the log.

=======  ==============================  =================================================
status   code                            when
=======  ==============================  =================================================
404      ``NOT_FOUND``                   no static file, rewrite or route matches
405      ``METHOD_NOT_ALLOWED``          the method is not served at that path
413      ``FUNCTION_PAYLOAD_TOO_LARGE``  the request body is over ``body_limit``
500      ``FUNCTION_INVOCATION_FAILED``  the function raised, failed to import, or the
                                         project/config cannot be loaded (dev shows why)
502      ``NO_RESPONSE_FROM_FUNCTION``   the worker died before answering
503      ``FUNCTION_THROTTLED``          the function's queue is full
504      ``FUNCTION_INVOCATION_TIMEOUT`` ``maxDuration`` exceeded
=======  ==============================  =================================================

The codes are Vercel's, so clients written against the platform keep working; they are the ONE
vocabulary of fnserve's answers (the admin endpoints' errors too), plus ``SHUTTING_DOWN`` (503:
the server stopped before the request finished, ``server.observe``). An
``fnserve.errors.FnserveError`` with a ``status_code`` (every ``WorkerError``) is answered by
``send_exception`` with its own status, message, detail and headers.
"""

from __future__ import annotations

import html
import json
from collections.abc import Iterable

from fnserve.errors import FnserveError
from fnserve.runtime.asgitypes import Scope, Send

CODES: dict[int, tuple[str, str]] = {
    400: ("BAD_REQUEST", "Bad Request"),
    404: ("NOT_FOUND", "Not Found"),
    405: ("METHOD_NOT_ALLOWED", "Method Not Allowed"),
    413: ("FUNCTION_PAYLOAD_TOO_LARGE", "Payload Too Large"),
    416: ("RANGE_NOT_SATISFIABLE", "Range Not Satisfiable"),
    500: ("FUNCTION_INVOCATION_FAILED", "Internal Server Error"),
    501: ("NOT_IMPLEMENTED", "Not Implemented"),
    502: ("NO_RESPONSE_FROM_FUNCTION", "Bad Gateway"),
    503: ("FUNCTION_THROTTLED", "Service Unavailable"),
    504: ("FUNCTION_INVOCATION_TIMEOUT", "Gateway Timeout"),
}


def wants_html(scope: Scope) -> bool:
    """True when the request's ``Accept`` header asks for ``text/html`` (a browser)."""
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value
    return False


def request_id_of(scope: Scope) -> str | None:
    """The request's ``x-request-id`` (set by ``server.observe.Observed``), or None."""
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            return bytes(value).decode("latin-1")
    return None


def render(
    status: int,
    message: str,
    *,
    detail: str | None = None,
    as_html: bool = False,
    code: str | None = None,
    request_id: str | None = None,
    refresh: int | None = None,
) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Build the headers and body of an error response.

    ``status``: an HTTP status from ``CODES``; ``message``: one sentence saying what was found
    and what to do; ``detail``: a traceback or longer explanation (only pass it in dev);
    ``as_html``: render a page for browsers instead of JSON; ``request_id``: the request's id, shown
    so a person can find the log lines; ``refresh``: seconds after which the HTML page reloads
    itself (``<meta http-equiv=refresh>``; a 503 with ``Retry-After``). Returns ``(headers, body)``.
    """
    code = code or CODES.get(status, ("ERROR", "Error"))[0]
    if as_html:
        title = f"{status} {CODES.get(status, ('', 'Error'))[1]}"
        pre = f"<pre>{html.escape(detail)}</pre>" if detail else ""
        body = (
            "<!doctype html><html><head><meta charset='utf-8'>"
            f"{'' if refresh is None else f'<meta http-equiv=refresh content={refresh}>'}"
            f"<title>{html.escape(title)}</title><style>"
            "body{font-family:system-ui,sans-serif;margin:2rem;color:#222}"
            "pre{background:#f6f6f6;padding:1rem;overflow:auto;font-size:13px}"
            "code{color:#b00}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p><code>{html.escape(code)}</code></p>"
            f"<p>{html.escape(message)}</p>{pre}<p><small>fnserve"
            f"{' · request ' + html.escape(request_id) if request_id else ''}</small></p></body></html>"
        ).encode()
        ctype = b"text/html; charset=utf-8"
    else:
        error: dict[str, str] = {"code": code, "message": message}
        if request_id:
            error["request_id"] = request_id
        if detail:
            error["detail"] = detail
        body = json.dumps({"error": error}).encode()
        ctype = b"application/json"
    headers = [
        (b"content-type", ctype),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store"),
        (b"x-fnserve-error", code.encode()),
    ]
    return headers, body


async def send_error(
    scope: Scope,
    send: Send,
    status: int,
    message: str,
    *,
    detail: str | None = None,
    dev: bool = True,
    headers: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Answer ``scope`` with an fnserve error (JSON, or HTML for browsers in dev).

    For a WebSocket scope, the handshake is refused (``websocket.close``; the ASGI server answers
    403) with code 1011 (server error) or 1008 (policy, for 4xx). ``detail`` is dropped unless
    ``dev``. ``headers``: extra headers (``Allow`` for 405, custom headers from vercel.json); with
    a ``Retry-After`` of whole seconds the HTML page reloads itself after that long.
    """
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1011 if status >= 500 else 1008})
        return
    headers = list(headers)
    retry = next((v for k, v in headers if k == b"retry-after"), b"")  # an HTML page retries by itself
    hdrs, body = render(
        status, message, detail=detail if dev else None, as_html=dev and wants_html(scope),
        request_id=request_id_of(scope) if status >= 500 else None, refresh=int(retry) if retry.isdigit() else None,
    )
    hdrs.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": b"" if scope.get("method") == "HEAD" else body})


async def send_exception(scope: Scope, send: Send, exc: FnserveError, *, dev: bool = True) -> None:
    """Answer ``scope`` with ``exc``, an ``FnserveError`` whose ``status_code`` is not None (see
    the tree in ``fnserve.errors``): its ``message``, its ``detail`` (dev only) and its
    ``headers`` (``Retry-After`` for ``Overloaded``); in production (``dev=False``) its
    ``public_message`` instead of ``message``. Call it only before the response started."""
    await send_error(scope, send, exc.status_code or 500, exc.message if dev else exc.public_message,
                     detail=exc.detail, dev=dev, headers=exc.headers)
