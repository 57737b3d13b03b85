"""A WSGI app whose module runs ``asyncio.run`` at import too (SPEC §4)."""
import asyncio


async def _value():
    return "wsgi loaded"


VALUE = asyncio.run(_value())


def app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [VALUE.encode()]
