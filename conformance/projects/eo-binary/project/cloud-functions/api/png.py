import zlib
from http.server import BaseHTTPRequestHandler

# a 1x1 PNG, built here so the fixture carries no binary file
_raw = b"\x00\xff\x00\x00"
_ihdr = b"IHDR" + (1).to_bytes(4, "big") * 2 + b"\x08\x02\x00\x00\x00"
_idat = b"IDAT" + zlib.compress(_raw)


def _chunk(data):
    return (len(data) - 4).to_bytes(4, "big") + data + zlib.crc32(data).to_bytes(4, "big")


PNG = b"\x89PNG\r\n\x1a\n" + _chunk(_ihdr) + _chunk(_idat) + _chunk(b"IEND")


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.end_headers()
        self.wfile.write(PNG[:10])
        self.wfile.flush()
        self.wfile.write(PNG[10:])
