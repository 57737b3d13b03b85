"""Fuzz test of the front door (issue 10, acceptance): hypothesis-built request lines, headers,
chunked bodies, paths and WebSocket handshakes, sent byte-exact over loopback to ``fnserve dev``
and ``fnserve start`` serving ``tests/projects/frontdoor`` (functions that answer 200 and mark
every answer ``x-fixture: 1``). Every input must get a 4xx, a 1xx/2xx/3xx, or a clean close —
never a 5xx fnserve produced itself (a 5xx marked by the fixture is the function's own), never a
hang or a crash — and a good request right after must succeed.

Bounded for ``make test`` (``FNSERVE_FUZZ_EXAMPLES``, default 40 HTTP + 15 WebSocket examples per
server, derandomized); ``make fuzz`` runs many more with fresh randomness and prints what was tried
(``FNSERVE_FUZZ_REPORT=1``: a table of input kinds and outcomes, plus sample inputs).
"""

from __future__ import annotations

import collections
import os
import time
from collections.abc import Iterator

import httpx
import pytest
from frontdoor_support import DevServer, Reply, StartServer, exchange
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("FNSERVE_FUZZ_EXAMPLES", "40"))
WS_EXAMPLES = max(5, EXAMPLES * 3 // 8)
RANDOM = os.environ.get("FNSERVE_FUZZ_RANDOM", "") == "1"  # make fuzz: fresh inputs every run
REPORT = os.environ.get("FNSERVE_FUZZ_REPORT", "") == "1"
SERVER_ARGS = ("--header-timeout", "2", "--body-timeout", "2")

FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not RANDOM, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                       HealthCheck.data_too_large])
WS_FUZZ = settings(FUZZ, max_examples=WS_EXAMPLES)

OUTCOMES: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
SAMPLES: dict[str, list[str]] = collections.defaultdict(list)


@pytest.fixture(scope="module", params=["dev", "start"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevServer]:
    cls = DevServer if request.param == "dev" else StartServer
    srv = cls("frontdoor", tmp_path_factory.mktemp("fuzz-" + request.param), *SERVER_ARGS)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()
        if REPORT:
            print(f"\n== fuzz outcomes on {request.param} ==")
            for kind, counts in sorted(OUTCOMES.items()):
                if kind.startswith(request.param + ":"):
                    print(f"{kind:28} " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
                    for sample in SAMPLES[kind][:6]:
                        print("    " + sample)


# ------------------------------------------------------------------------------ strategies
TOKEN = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-.^_`|~"),
                min_size=1, max_size=12).map(str.encode)
ANY_BYTES = st.binary(max_size=40)
GOOD_METHODS = [b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH"]
METHODS = st.one_of(st.sampled_from(GOOD_METHODS * 4 + [b"CONNECT", b"TRACE", b"get", b"PROPFIND"]),
                    TOKEN, ANY_BYTES)
SEGMENT = st.one_of(
    st.sampled_from([b"..", b".", b"", b"%2e%2e", b"%2F", b"%00", b"%zz", b"%", b"\xc3\xa9", b"%C3%A9",
                     b"index.html", b"h", b"a", b"fail", b"~", b"[...slug]", b";x=1", b"%0d%0a", b"\x7f"]),
    TOKEN, TOKEN, TOKEN,
    st.binary(min_size=1, max_size=8),
)
PATHS = st.builds(
    lambda prefix, segs, query: prefix + b"/".join(segs) + query,
    st.sampled_from([b"/api/h/"] * 4 + [b"/api/a/"] * 4 + [b"/", b"/api/", b"//", b"", b"*", b"http://x/api/h/",
                                                           b"/public/"]),
    st.lists(SEGMENT, max_size=5),
    st.one_of(st.just(b""), st.just(b""), st.builds(lambda q: b"?" + q, st.binary(max_size=20)),
              st.builds(lambda q: b"?" + q, st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=20)
                        .map(str.encode))),
)
VERSIONS = st.sampled_from([b" HTTP/1.1"] * 12 + [b" HTTP/1.0"] * 3 + [b" HTTP/0.9", b"", b" HTTP/2", b" HTTP/1.2", b" HTTP/9.9",
                            b" http/1.1", b" HTTP/1.1 extra", b" HTTP/", b"  HTTP/1.1"])
HEADER_NAMES = st.one_of(
    st.sampled_from([b"Host", b"Content-Length", b"Transfer-Encoding", b"Connection", b"Expect", b"Range",
                     b"If-Modified-Since", b"If-None-Match", b"If-Range", b"Accept", b"Cookie", b"Upgrade",
                     b"X-Forwarded-For", b"Content-Type", b"Accept-Encoding", b"Trailer"]),
    TOKEN, ANY_BYTES)
HEADER_NAMES = st.one_of(HEADER_NAMES, HEADER_NAMES.filter(lambda n: n[:1].isalpha() and n.isascii()))
HEADER_VALUES = st.one_of(
    st.sampled_from([b"0", b"-1", b"5", b"99999999999999999999", b"chunked", b"gzip, chunked", b"chunked, gzip",
                     b"close", b"keep-alive", b"upgrade", b"100-continue", b"bytes=0-1", b"bytes=5-1,1-",
                     b"bytes=-0", b"Mon, 01 Jan 99999 00:00:00 GMT", b"*", b'W/"x"', b"websocket", b"",
                     b"a" * 70_000]),
    st.binary(max_size=30),
    st.text(max_size=20).map(lambda t: t.encode("utf-8")),
    TOKEN,
)
PRINTABLE = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=30).map(str.encode)
HEADERS = st.lists(st.one_of(st.tuples(HEADER_NAMES, HEADER_VALUES), st.tuples(TOKEN, PRINTABLE),
                             st.tuples(TOKEN, PRINTABLE)), max_size=8)


@st.composite
def chunked_bodies(draw: st.DrawFn) -> bytes:
    out = b""
    for chunk in draw(st.lists(st.binary(max_size=20), max_size=4)):
        size = draw(st.sampled_from([b"%x" % len(chunk), b"%X" % len(chunk), b"zz", b"-1", b"%x;ext=1" % len(chunk),
                                     b"%x" % (len(chunk) + 3), b"ffffffffffffffffff"]))
        out += size + draw(st.sampled_from([b"\r\n", b"\n", b""])) + chunk + draw(st.sampled_from([b"\r\n", b"", b"x"]))
    return out + draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nx-trailer: 1\r\n\r\n", b"", b"0\r\n", b"garbage"]))


BODIES = st.one_of(st.just(b""), st.binary(max_size=64), chunked_bodies())
EOLS = st.sampled_from([b"\r\n", b"\n", b"\r"])


@st.composite
def http_requests(draw: st.DrawFn) -> tuple[str, bytes]:
    """(kind, raw bytes): one request, well-formed or not."""
    method = draw(st.one_of(st.sampled_from(GOOD_METHODS), METHODS))  # half of them well-formed
    path, version = draw(PATHS), draw(VERSIONS)
    eol = draw(st.sampled_from([b"\r\n"] * 5 + [b"\n", b"\r"]))
    headers = draw(HEADERS)
    if draw(st.booleans()):
        headers = [(b"Host", b"x"), *headers]
    body = draw(BODIES)
    if draw(st.booleans()):
        headers.append((b"Transfer-Encoding", b"chunked") if draw(st.booleans()) else
                       (b"Content-Length", b"%d" % len(body)))
    lines = [method + b" " + path + version] + [n + b": " + v for n, v in headers]
    raw = eol.join(lines) + eol + eol + body
    kind = ("wellformed" if method in (b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"PATCH")
            and version in (b" HTTP/1.1", b" HTTP/1.0") and eol == b"\r\n" else "malformed")
    return kind, raw


@st.composite
def ws_handshakes(draw: st.DrawFn) -> tuple[str, bytes]:
    path = draw(st.sampled_from([b"/api/a/x", b"/api/a/x?deny", b"/api/h/x", b"/index.html", b"/nope", b"/api/a/%zz"]))
    headers = [
        (b"Host", b"x"),
        (b"Upgrade", draw(st.sampled_from([b"websocket"] * 6 + [b"WebSocket", b"h2c", b"", b"websocket, x"]))),
        (b"Connection", draw(st.sampled_from([b"Upgrade"] * 6 + [b"upgrade, keep-alive", b"close", b""]))),
        (b"Sec-WebSocket-Key", draw(st.one_of(st.just(b"dGhlIHNhbXBsZSBub25jZQ=="), st.just(b"dGhlIHNhbXBsZSBub25jZQ=="),
                                              st.binary(max_size=30)))),
        (b"Sec-WebSocket-Version", draw(st.sampled_from([b"13"] * 6 + [b"8", b"", b"99"]))),
    ]
    if draw(st.booleans()):  # else the full, valid set of handshake headers
        headers = draw(st.permutations(headers))
        headers = headers[: draw(st.integers(min_value=2, max_value=len(headers)))]
    extra = draw(st.sampled_from([b"", b"Sec-WebSocket-Protocol: chat\r\n", b"Sec-WebSocket-Extensions: x\r\n",
                                  b"Origin: http://evil\r\n"]))
    frames = draw(st.one_of(st.just(b""), st.just(b"\x81\x82abcd\x09\x0b"), st.binary(max_size=20)))
    raw = b"GET " + path + b" HTTP/1.1\r\n" + b"".join(n + b": " + v + b"\r\n" for n, v in headers) + extra + b"\r\n"
    return ("ws-deny" if b"deny" in path else "ws"), raw + (frames if frames.startswith(b"\x81") else b"")


# ------------------------------------------------------------------------------ checks
def _first_final_status(data: bytes) -> int | None:
    """The first non-1xx status (101 counts as final), None when there is no status line."""
    while data.startswith(b"HTTP/1."):
        try:
            status = int(data[9:12])
        except ValueError:
            return None
        if status >= 200 or status == 101:
            return status
        data = data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in data else b""
    return None


def _check(server: DevServer, kind: str, raw: bytes) -> None:
    reply: Reply = exchange(server.url, raw, timeout=10, limit=256 * 1024, one_response=True,
                            head_only=raw.startswith(b"HEAD "))
    status = _first_final_status(reply.data)
    name = "dev" if type(server) is DevServer else "start"
    outcome = str(status) if status is not None else ("close" if not reply.data else "junk")
    OUTCOMES[f"{name}:{kind}"][outcome] += 1
    if REPORT and len(SAMPLES[f"{name}:{kind}"]) < 40 and (outcome not in ("200",) or len(raw) < 120):
        SAMPLES[f"{name}:{kind}"].append(f"{raw[:110]!r} -> {outcome}")
    # the server owes an answer or a close within body_timeout (2 s) + a margin; WebSocket: open after 101
    assert not reply.timed_out or status == 101, f"no answer and no close within 10 s for {raw[:300]!r}"
    assert status is not None or not reply.data, f"junk answer {reply.data[:200]!r} for {raw[:300]!r}"
    if status is not None and status >= 500:
        assert reply.fixture, f"fnserve answered {status} for {raw[:300]!r}:\n{reply.data[:600]!r}"
    assert server.proc is not None and server.proc.poll() is None, "the server died"
    good = httpx.get(server.url + "/api/h/ok", timeout=10)
    assert good.status_code == 200 and good.headers.get("x-fixture") == "1", (raw[:300], good.status_code)


@FUZZ
@given(request=http_requests())
def test_any_http_request_gets_a_clean_answer(server: DevServer, request: tuple[str, bytes]) -> None:
    _check(server, *request)


@WS_FUZZ
@given(handshake=ws_handshakes())
def test_any_websocket_handshake_gets_a_clean_answer(server: DevServer, handshake: tuple[str, bytes]) -> None:
    _check(server, *handshake)


def test_the_fixture_marks_its_own_5xx(server: DevServer) -> None:
    """The oracle's premise: a function's deliberate 5xx is told apart from fnserve's."""
    started = time.monotonic()
    reply = exchange(server.url, b"GET /api/h/fail HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert reply.status == 500 and reply.fixture
    assert time.monotonic() - started < 10
