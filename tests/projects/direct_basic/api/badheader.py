"""A raw ASGI app answering with one response header an HTTP/1.1 server must not write as is
(tests/runtime/test_direct_headers.py, tests/server/test_direct_lost.py): ``?case=NAME`` picks
it from ``CASES``; ``?case=ok`` (or none) answers 200 "badheader ok"."""

from urllib.parse import parse_qs

CASES = {
    "ok": (b"x-fine", b"fine"),
    "crlf": (b"x-bad", b"a\r\nx-injected: 1"),
    "lf": (b"x-bad", b"a\nb"),
    "cr": (b"x-bad", b"a\rb"),
    "nul": (b"x-bad", b"a\x00b"),
    "ctl": (b"x-bad", b"a\x01b"),
    "del": (b"x-bad", b"a\x7fb"),
    "tab": (b"x-tab", b"a\tb"),
    "high": (b"x-high", b"caf\xc3\xa9"),
    "space_name": (b"x bad", b"v"),
    "colon_name": (b"x:bad", b"v"),
    "paren_name": (b"x(bad)", b"v"),
    "quote_name": (b'x"bad', b"v"),
    "lf_name": (b"x\nbad", b"v"),
    "empty_name": (b"", b"v"),
    "high_name": (b"x-caf\xc3\xa9", b"v"),
    "str_name": ("x-str", b"v"),
    "str_value": (b"x-str", "v"),
    "int_value": (b"x-int", 1),
    "none_value": (b"x-none", None),
    "nonlatin_value": (b"x-str", "\u20ac"),
    "bytearray_value": (b"x-ba", bytearray(b"v")),
}


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    case = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("case", ["ok"])[0]
    body = b"badheader " + case.encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"%d" % len(body)), CASES[case]]})
    await send({"type": "http.response.body", "body": body})
