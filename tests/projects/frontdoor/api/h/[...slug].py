"""Fuzz fixture (issue 10): a handler class under /api/h/** answering 200 to every method with
the body length it read; every answer carries ``x-fixture: 1`` so a test can tell the function's
responses from fnserve's own. ``/api/h/fail`` answers 500 on purpose (also marked)."""

from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        out = b"read %d\n" % len(body)
        self.send_response(500 if self.path.startswith("/api/h/fail") else 200)
        self.send_header("x-fixture", "1")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer

    def do_HEAD(self):
        self.send_response(200)
        self.send_header("x-fixture", "1")
        self.end_headers()

    def log_message(self, *args):
        pass
