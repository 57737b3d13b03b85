"""Kills its own process in the middle of a request (os._exit(1)) unless ?ok=1."""

import os
from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if "ok=1" not in self.path:
            os._exit(1)
        self.send_response(200)
        self.send_header("Content-Length", "8")
        self.end_headers()
        self.wfile.write(b"crash ok")

    def log_message(self, *args):
        pass
