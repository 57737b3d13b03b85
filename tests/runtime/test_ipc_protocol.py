"""In-memory tests of the frame codec and the Connection over a socketpair (no worker process)."""

from __future__ import annotations

import asyncio
import socket

from ipc_support import http_scope, run

from fnserve.runtime import protocol as p


def test_scope_roundtrip_keeps_bytes_and_drops_unserialisable():
    scope = http_scope("/api/ü", query=b"a=\xff&b=2", headers=[(b"x-bin", b"\x80\xfe"), (b"host", b"h")])
    scope["state"] = {"db": object()}
    scope["extensions"] = {"http.response.trailers": {}, "weird": object()}
    back = p.decode_scope(p.encode_scope(scope))
    assert back["query_string"] == b"a=\xff&b=2"
    assert back["headers"] == [(b"x-bin", b"\x80\xfe"), (b"host", b"h")]
    assert back["raw_path"] == scope["raw_path"]
    assert back["client"] == ("127.0.0.1", 1234)
    assert "state" not in back
    assert back["extensions"] == {"http.response.trailers": {}}
    assert back["path"] == "/api/ü"


def test_message_roundtrip_bytes_text_headers():
    for message in (
        {"type": "websocket.send", "bytes": b"\x00\x01\xff"},
        {"type": "websocket.send", "text": "héllo"},
        {"type": "http.response.start", "status": 201, "headers": [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")]},
        {"type": "websocket.close", "code": 1000, "reason": "bye"},
        {"type": "http.response.trailers", "headers": [(b"x-t", b"1")], "more_trailers": False},
    ):
        flags, meta, data = p.encode_message(message)
        assert p.decode_message(flags, meta, data) == message


def test_connection_multiplexes_and_reassembles_split_frames():
    async def main():
        a, b = socket.socketpair()
        loop = asyncio.get_running_loop()
        opened = []
        _, front = await loop.create_unix_connection(p.Connection, sock=a)
        _, worker = await loop.create_unix_connection(
            lambda: p.Connection(on_open=lambda s, scope: opened.append((s, scope))), sock=b
        )
        streams = [front.open_stream(http_scope(f"/{i}")) for i in range(50)]
        big = bytes(range(256)) * 20000  # 5 MB: CHUNK frames, paced by the stream's flow-control window
        sender = asyncio.ensure_future(streams[7].send_data(p.HTTP_REQUEST, big, more=False))
        await asyncio.sleep(0.05)
        assert not sender.done() and streams[7].send_window <= 0  # stalled until the consumer reads
        for _ in range(100):
            if len(opened) == 50:
                break
            await asyncio.sleep(0.01)
        assert [scope["path"] for _, scope in opened] == [f"/{i}" for i in range(50)]
        stream7 = opened[7][0]
        got = b""
        while True:
            ftype, flags, meta, data = await stream7.get()
            assert ftype == p.HTTP_REQUEST
            got += data
            if not flags & p.MORE:
                break
        assert got == big
        assert await asyncio.wait_for(sender, 5) is True
        # answers come back on the right stream
        opened[3][0].send(p.RESPONSE_BODY, 0, b"", b"three")
        opened[4][0].send(p.RESPONSE_BODY, 0, b"", b"four")
        assert (await streams[4].get())[3] == b"four"
        assert (await streams[3].get())[3] == b"three"
        # losing the connection fails every open stream
        worker.abort()
        try:
            await asyncio.wait_for(streams[0].get(), 2)
        except p.ConnectionLost:
            pass
        else:  # pragma: no cover
            raise AssertionError("expected ConnectionLost")
        front.close()

    run(main(), 30)


def test_packed_headers_and_their_json_fallback():
    headers = [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"x-empty", b"")]
    assert p.unpack_headers(p.pack_headers(headers)) == headers
    assert p.unpack_headers(p.pack_headers([])) == []
    assert p.pack_headers([(b"x-nul", b"a\x00b")]) is None  # cannot be packed: JSON form instead
    assert p.pack_headers([("str", "value")]) is None
    for hs in (headers, [(b"x-nul", b"a\x00b")]):
        scope = http_scope("/x", headers=hs)
        flags, meta, data = p.scope_frame(scope)
        back = p.decode_scope(meta)
        if flags & p.RAW_HEADERS:
            back["headers"] = p.unpack_headers(data[: back.pop("_hl")])
        assert back["headers"] == hs


def test_messages_accept_any_iterable_of_headers_and_bytes_like_bodies():
    # SPEC §4: headers are any iterable of pairs (Sanic sends a generator), bodies any bytes-like
    pairs = [(b"x-a", b"1"), (b"set-cookie", b"s=1")]
    assert p.unpack_headers(p.pack_headers(h for h in pairs)) == pairs
    assert p.unpack_headers(p.pack_headers([[bytearray(b"x-a"), memoryview(b"1")]])) == [(b"x-a", b"1")]
    for message, want in (
        ({"type": "websocket.accept", "headers": (h for h in pairs)}, {"type": "websocket.accept", "headers": pairs}),
        ({"type": "http.response.trailers", "headers": iter(pairs)}, {"type": "http.response.trailers", "headers": pairs}),
        ({"type": "websocket.send", "bytes": bytearray(b"\x00\xff")}, {"type": "websocket.send", "bytes": b"\x00\xff"}),
        ({"type": "websocket.send", "bytes": memoryview(b"mv")}, {"type": "websocket.send", "bytes": b"mv"}),
        ({"type": "http.response.body", "body": memoryview(b"abc")[1:]}, {"type": "http.response.body", "body": b"bc"}),
        ({"type": "websocket.accept", "headers": [(memoryview(b"x-m"), bytearray(b"v"))]},
         {"type": "websocket.accept", "headers": [(b"x-m", b"v")]}),
    ):
        assert p.decode_message(*p.encode_message(message)) == want


def test_an_oversize_frame_fails_its_stream_only(monkeypatch):
    """Issue 10 item 3: a frame over MAX_FRAME (huge headers) is refused by the SENDER with
    FrameTooLarge; before, it went out and the receiver dropped the whole shared connection."""
    monkeypatch.setattr(p, "MAX_FRAME", 64 * 1024)

    async def main():
        a, b = socket.socketpair()
        loop = asyncio.get_running_loop()
        opened = []
        _, front = await loop.create_unix_connection(p.Connection, sock=a)
        _, worker = await loop.create_unix_connection(
            lambda: p.Connection(on_open=lambda s, scope: opened.append((s, scope))), sock=b
        )
        ok = front.open_stream(http_scope("/ok"))
        try:
            front.open_stream(http_scope("/big", headers=[(b"x-big", b"x" * 100_000)]))
        except p.FrameTooLarge as exc:
            assert exc.size > 100_000 and "limit" in str(exc)
        else:  # pragma: no cover
            raise AssertionError("expected FrameTooLarge")
        for _ in range(100):
            if opened:
                break
            await asyncio.sleep(0.01)
        assert [scope["path"] for _, scope in opened] == ["/ok"]
        wstream = opened[0][0]
        try:  # the worker side: a response start with huge headers
            wstream.send(p.RESPONSE_START, 0, b"200", b"y" * 100_000)
        except p.FrameTooLarge:
            pass
        else:  # pragma: no cover
            raise AssertionError("expected FrameTooLarge")
        wstream.send(p.RESPONSE_BODY, 0, b"", b"fine")
        assert (await asyncio.wait_for(ok.get(), 2))[3] == b"fine"
        assert not front.closed and not worker.closed
        front.abort()
        worker.abort()

    run(main())
