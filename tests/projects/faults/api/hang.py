"""Sleeps 30 s, far past its maxDuration of 1 s (vercel.json), unless ?ok=1."""

import time
from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if "ok=1" not in self.path:
            time.sleep(30)
        self.send_response(200)
        self.send_header("Content-Length", "7")
        self.end_headers()
        self.wfile.write(b"hang ok")

    def log_message(self, *args):
        pass
