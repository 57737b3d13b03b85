"""Answers its VERSION; the SIGHUP test changes it."""

from http.server import BaseHTTPRequestHandler

VERSION = "v1"


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = VERSION.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
