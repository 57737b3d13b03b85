"""Answers its VERSION (after ?sleep=S seconds when given); the SIGHUP tests change it."""

import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

VERSION = "v1"


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(float(parse_qs(urlsplit(self.path).query).get("sleep", ["0"])[0]))
        body = VERSION.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
