"""The frame format of the front ↔ worker protocol and the codec for ASGI scopes and messages.

Stdlib only (runs in the worker too, Python 3.9–3.13). ``protocol.Connection`` sends and receives
these frames.

Frame layout (network byte order), one frame per ASGI message or control event::

    u32 meta_len | u32 data_len | u32 stream | u8 type | u8 flags | meta (JSON) | data (raw bytes)

* ``stream`` 0 carries control frames; every other id is one ASGI conversation (one HTTP request
  or one WebSocket), opened by the front with a ``SCOPE`` frame. Ids are never reused while open.
* ``meta`` is compact JSON (bytes fields such as headers, ``query_string``, ``raw_path`` travel
  as latin-1 strings and are restored on decode); ``data`` is the body bytes, untouched.
  Neither marshal nor pickle: the two sides may run different Python versions.
* ``flags``: ``MORE`` = ``more_body``; ``DATA_BYTES`` / ``DATA_TEXT`` say which key of a generic
  message the data belongs to (``bytes``/``body`` or ``text``, UTF-8); ``RAW_HEADERS``: headers
  are a NUL-separated block in data instead of JSON (the common case; ≈5 µs less per request).

Frame types (direction: F = front→worker, W = worker→front):

==============  ===  ==================================================================
SCOPE           F    open a stream; meta = the ASGI scope (JSON object, or the split form below);
                     with RAW_HEADERS, data starts with the packed headers (``_hl`` bytes); with
                     DATA_BODY, the rest of data is the first ``http.request`` chunk (MORE = more_body)
HTTP_REQUEST    F    ``http.request``; data = body chunk, MORE = more_body
DISCONNECT      F    the client went away / cancel: the app receives ``http.disconnect``
RESPONSE_START  W    ``http.response.start``; meta = the message as JSON, or with RAW_HEADERS
                     meta = the status in ASCII digits and data = the packed headers
RESPONSE_BODY   W    ``http.response.body``; data = chunk, MORE = more_body
MESSAGE         F/W  any other ASGI message (WebSocket, trailers, ...): meta + optional data
END             W    the app returned; the stream is closed on the worker side. Not sent for an
                     HTTP stream whose response completed (the front is done with it already)
ERROR           W    the app raised; meta = {message, traceback, response_started}
HELLO           W    stream 0, first frame: {token, pid, python}
READY           W    stream 0: the function loaded and lifespan startup ran: {pid, startup_ms, kind}
LOAD_ERROR      W    stream 0: loading failed: {message, file, attr, found, traceback, hint}
HEARTBEAT       W    stream 0: the worker's event loop is alive: {inflight}
STOP            F    stream 0: graceful stop: {timeout} seconds to finish in-flight streams
WINDOW          F/W  per stream: the consumer took N more data bytes (meta = N in ASCII)
REPORT          W    stream 0: direct path, requests served on passed connections:
                     {requests: [[request_id, method, path_with_query, status, duration_ms], ...]}
EXPIRED         W    stream 0: direct path, a request ran past maxDuration (answered 504): {limit}
DIRECT_PLAN     F    stream 0: direct path, what the worker serves itself (``runtime.direct``)
==============  ===  ==================================================================

Split scope (the usual HTTP scope, ≈6 µs less per request over both sides than one JSON object):
meta = ``[method, path, raw_path, query_string, client, root_path, route_params|null, _hl]`` (JSON)
``\0`` the other keys (``type``, ``asgi``, ``http_version``, ``scheme``, ``server``, ...) as a JSON
object. Those are the same for most requests: the front keeps their encoding and the worker its
parse (``_SCOPE_CACHE`` entries each), compared by value, so each side does one small JSON array.
"""

import json
import struct
from typing import Any, Callable, Dict, List, Optional, Tuple

HEADER = struct.Struct("!IIIBB")
HEADER_SIZE = HEADER.size

# stream frames
SCOPE = 1
HTTP_REQUEST = 2
DISCONNECT = 3
RESPONSE_START = 4
RESPONSE_BODY = 5
MESSAGE = 6
END = 7
ERROR = 8
# control frames (stream 0)
HELLO = 16
READY = 17
LOAD_ERROR = 18
HEARTBEAT = 19
STOP = 20
WINDOW = 21  # both directions, per stream: meta = ASCII digits, bytes of data the peer consumed
REPORT = 22  # direct path (runtime.direct), worker → front
EXPIRED = 23  # direct path, worker → front
DIRECT_PLAN = 24  # direct path, front → worker

# flags
MORE = 1
DATA_BYTES = 2
DATA_TEXT = 4
DATA_BODY = 8
RAW_HEADERS = 16  # headers travel as a NUL-separated block in data (see pack_headers)

MAX_FRAME = 64 * 1024 * 1024  # bytes of meta + data; bigger frames are a protocol error
CHUNK = 256 * 1024  # body chunks bigger than this are split over several frames
WINDOW_SIZE = 1024 * 1024  # per-stream flow control: data bytes a sender may have unconsumed
WINDOW_UPDATE = 256 * 1024  # a receiver returns credit once its consumer took this much
HIGH_WATER = 64 * 1024 * 1024  # safety net: queued unconsumed bytes that pause reading entirely
LOW_WATER = 16 * 1024 * 1024
FLUSH_NOW = 256 * 1024  # pending output above this is written without waiting for the step end



def _no_default(obj: Any) -> Any:
    raise TypeError("%s is not JSON serializable" % type(obj).__name__)


def _make_codec() -> Tuple[Callable[[Any], str], Callable[[bytes], Any]]:
    """Compact JSON dumps/loads calling the C encoder/scanner directly (≈2 µs less per call than
    ``json.dumps(separators=...)``, which builds a new encoder every time); pure-Python fallback."""
    slow_dumps = json.JSONEncoder(separators=(",", ":")).encode
    dumps: Callable[[Any], str]
    try:
        from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]

        encoder = c_make_encoder(None, _no_default, encode_basestring_ascii, None, ":", ",", False, False, True)
        if "".join(encoder({"a": [1, "\xe9"]}, 0)) != slow_dumps({"a": [1, "\xe9"]}):
            raise ValueError("unexpected C encoder behaviour")
    except Exception:
        dumps = slow_dumps
    else:

        def c_dumps(obj: Any) -> str:
            return "".join(encoder(obj, 0))

        dumps = c_dumps

    # scan_once is set by JSONDecoder.__init__ (C scanner or py_scanstring); typeshed omits it
    scan: Callable[[str, int], Tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]

    def loads(data: bytes) -> Any:
        text = data.decode("utf-8")
        try:
            obj, end = scan(text, 0)
        except StopIteration:
            raise ValueError("invalid JSON") from None
        if end != len(text):
            return json.loads(text)  # trailing whitespace or garbage: let json say which
        return obj

    return dumps, loads


_dumps, _loads = _make_codec()

Frame = Tuple[int, int, bytes, bytes]  # (type, flags, meta, data)


class ProtocolError(Exception):
    """The peer sent something that is not a valid frame (too big, bad JSON)."""


class FrameTooLarge(ProtocolError):
    """A frame this side was about to send is over ``MAX_FRAME`` bytes (e.g. a scope or a response
    start carrying huge headers). Raised by ``Connection.write_frame`` before anything is queued:
    only the stream that tried fails, the shared connection and its other streams go on.
    ``.size``: meta + data bytes of the refused frame."""

    def __init__(self, size: int) -> None:
        super().__init__("a frame of %d bytes is over the %d-byte limit of the worker connection; "
                         "send smaller headers or messages" % (size, MAX_FRAME))
        self.size = size


class ConnectionLost(Exception):
    """The connection to the peer closed while a stream was open. ``.cause``: the OS error or None."""

    def __init__(self, message: str = "the connection to the peer was lost", cause: Optional[BaseException] = None):
        super().__init__(message)
        self.cause = cause


# --------------------------------------------------------------------------------- encoding


def _headers_out(headers: Any) -> List[List[str]]:
    out = []
    for name, value in headers:  # any iterable of pairs; names and values bytes-like or str
        out.append([name if isinstance(name, str) else bytes(name).decode("latin-1"),
                    value if isinstance(value, str) else bytes(value).decode("latin-1")])
    return out


def _headers_in(headers: List[List[str]]) -> List[Tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]


_BYTES_KEYS = ("query_string", "raw_path")


def encode_scope(scope: Dict[str, Any]) -> bytes:
    """JSON for an ASGI scope: headers/query_string/raw_path as latin-1, tuples as lists; the
    ``state`` key and values that are not JSON-able (e.g. objects in ``extensions``) are dropped."""
    return _encode_scope_copy(dict(scope))


def _encode_scope_copy(out: Dict[str, Any]) -> bytes:
    """``encode_scope`` on a private copy (mutated)."""
    out.pop("state", None)
    out.pop("app", None)
    headers = out.get("headers")
    if headers is not None:
        try:
            out["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in headers]
        except AttributeError:
            out["headers"] = _headers_out(headers)
    for key in _BYTES_KEYS:
        value = out.get(key)
        if value is not None and not isinstance(value, str):
            out[key] = bytes(value).decode("latin-1")
    try:
        return _dumps(out).encode()
    except (TypeError, ValueError):
        return _dumps(_jsonable(out)).encode()


_DROP = object()


def _jsonable(value: Any) -> Any:
    """``value`` with everything JSON cannot carry removed (dict entries, list items)."""
    if isinstance(value, (str, int, float, bool, type(None))):
        return value
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            v = _jsonable(v)
            if v is not _DROP and isinstance(k, str):
                out[k] = v
        return out
    if isinstance(value, (list, tuple)):
        return [v for v in map(_jsonable, value) if v is not _DROP]
    return _DROP


def decode_scope(meta: bytes) -> Dict[str, Any]:
    """Inverse of ``encode_scope`` (and of the split form of ``scope_frame``): bytes fields
    restored, ``client``/``server`` as tuples."""
    if meta[:1] == b"[":
        return _decode_split(meta)
    scope: Dict[str, Any] = _loads(meta)
    if "headers" in scope:
        scope["headers"] = _headers_in(scope["headers"])
    for key in _BYTES_KEYS:
        value = scope.get(key)
        if isinstance(value, str):
            scope[key] = value.encode("latin-1")
    for key in ("client", "server"):
        if isinstance(scope.get(key), list):
            scope[key] = tuple(scope[key])
    return scope


def pack_headers(headers: Any) -> Optional[bytes]:
    """``[(name, value), ...]`` (bytes) → ``name\\0value\\0name\\0value`` — no JSON, no latin-1
    round trip. None when that cannot represent them (a NUL inside a name or value, which HTTP
    parsers reject anyway, or non-bytes items): use the JSON form instead. ``headers``: any
    iterable of pairs of bytes-like objects; one that is not a list or tuple is read into a list
    here, so a caller that may need the JSON form after a None must materialise a generator
    itself first (as the worker does)."""
    if type(headers) is not list and type(headers) is not tuple:
        headers = list(headers)
    try:
        block = b"\0".join([item for pair in headers for item in pair])
    except TypeError:
        return None
    n = len(headers)
    if n and block.count(b"\0") != 2 * n - 1:
        return None
    return block


def unpack_headers(block: bytes) -> List[Tuple[bytes, bytes]]:
    """Inverse of ``pack_headers``."""
    if not block:
        return []
    parts = block.split(b"\0")
    return list(zip(parts[::2], parts[1::2]))


def scope_frame(scope: Dict[str, Any]) -> Tuple[int, bytes, bytes]:
    """An ASGI scope → (flags, meta, data) of a SCOPE frame: headers packed in data with
    RAW_HEADERS (their length in meta as ``"_hl"``) when possible, else all in JSON meta; the
    usual HTTP scope in the split form (module docstring)."""
    headers = scope.get("headers")
    block = pack_headers(headers) if headers is not None else None
    if block is None:
        return 0, encode_scope(scope), b""
    rest = dict(scope)
    del rest["headers"]
    meta = _split_meta(rest, len(block))
    if meta is not None:
        return RAW_HEADERS, meta, block
    rest = dict(scope)  # _split_meta took keys out
    del rest["headers"]
    rest["_hl"] = len(block)
    return RAW_HEADERS, _encode_scope_copy(rest), block


_SPLIT_KEYS = ("method", "path", "raw_path", "query_string", "client", "root_path")
_SCOPE_CACHE = 32  # cached constant parts per side (front: encodings, worker: parses)
_const_out: List[Tuple[Dict[str, Any], bytes]] = []  # front: (other keys, their JSON + NUL)
_const_in: Dict[bytes, Tuple[Dict[str, Any], Tuple[str, ...], Tuple[str, ...]]] = {}  # worker: JSON → (parsed, keys with containers, flat ones)


def _split_meta(rest: Dict[str, Any], hl: int) -> Optional[bytes]:
    """The split-form meta of an HTTP scope without its headers (``rest``, mutated), or None
    when the scope does not have the usual shape (then the JSON object form is used)."""
    try:
        method, path, raw_path, query, client, root_path = [rest.pop(k) for k in _SPLIT_KEYS]
        params = rest.pop("fnserve.route_params", None)  # null: absent (always a dict when present)
        var = [method, path, raw_path.decode("latin-1"), query.decode("latin-1"), client, root_path, params, hl]
        rest.pop("state", None)
        rest.pop("app", None)
        for cached, const in _const_out:  # noqa: B007 - const is used after the loop
            if cached == rest:
                break
        else:
            const = b"\0" + _dumps(rest).encode()
            if len(_const_out) >= _SCOPE_CACHE:
                del _const_out[0]
            _const_out.append((rest, const))
        return _dumps(var).encode() + const
    except (KeyError, AttributeError, TypeError, ValueError):
        return None


def _fresh(value: Any) -> Any:
    """A deep copy of parsed JSON (so requests never share a mutable value of the scope)."""
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    return value


def _flat(value: Any) -> bool:
    items = value.values() if isinstance(value, dict) else value
    return not any(isinstance(v, (dict, list)) for v in items)


def _decode_split(meta: bytes) -> Dict[str, Any]:
    cut = meta.index(b"\0")
    const = meta[cut + 1:]
    cached = _const_in.get(const)
    if cached is None:
        parsed = _loads(const)
        if isinstance(parsed.get("server"), list):
            parsed["server"] = tuple(parsed["server"])
        if len(_const_in) >= _SCOPE_CACHE:
            _const_in.clear()
        containers = tuple(k for k, v in parsed.items() if isinstance(v, (dict, list)))
        cached = _const_in[const] = (parsed, containers, tuple(k for k in containers if _flat(parsed[k])))
    base, containers, flat = cached
    scope = base.copy()
    for key in containers:
        scope[key] = base[key].copy() if key in flat else _fresh(base[key])
    method, path, raw_path, query, client, root_path, params, hl = _loads(meta[:cut])
    scope["method"] = method
    scope["path"] = path
    scope["raw_path"] = raw_path.encode("latin-1")
    scope["query_string"] = query.encode("latin-1")
    scope["client"] = tuple(client) if isinstance(client, list) else client
    scope["root_path"] = root_path
    if params is not None:
        scope["fnserve.route_params"] = params
    scope["_hl"] = hl
    return scope


def encode_message(message: Dict[str, Any]) -> Tuple[int, bytes, bytes]:
    """A generic ASGI message → (flags, meta, data). ``bytes``/``body`` (any bytes-like object)
    go raw in data (flag DATA_BYTES / DATA_BODY), ``text`` goes UTF-8 in data (DATA_TEXT);
    headers (any iterable of pairs, read once) as latin-1."""
    meta: Dict[str, Any] = {}
    flags = 0
    data = b""
    for key, value in message.items():
        if value is None:
            continue
        if key == "bytes" and not flags:
            flags, data = DATA_BYTES, bytes(value)
        elif key == "body" and not flags:
            flags, data = DATA_BODY, bytes(value)
        elif key == "text" and not flags:
            flags, data = DATA_TEXT, value.encode("utf-8")
        elif key == "headers":
            meta[key] = _headers_out(value)
        else:
            meta[key] = value
    return flags, _dumps(meta).encode(), data


def decode_message(flags: int, meta: bytes, data: bytes) -> Dict[str, Any]:
    """Inverse of ``encode_message``."""
    message: Dict[str, Any] = _loads(meta)
    if "headers" in message:
        message["headers"] = _headers_in(message["headers"])
    if flags & DATA_BYTES:
        message["bytes"] = data
    elif flags & DATA_BODY:
        message["body"] = data
    elif flags & DATA_TEXT:
        message["text"] = data.decode("utf-8")
    return message


def dumps(obj: Any) -> bytes:
    """Compact JSON bytes (for control-frame meta)."""
    return _dumps(obj).encode()


def loads(meta: bytes) -> Any:
    """Parse control-frame meta (``{}`` when empty)."""
    return _loads(meta) if meta else {}


