"""/api/slow_sync?sleep=S answers "slow sync ok" after S seconds (handler class: runs in a thread;
maxDuration 1 in vercel.json)."""

import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        query = parse_qs(urlsplit(self.path).query)
        time.sleep(float(query.get("sleep", ["0"])[0]))
        body = b"slow sync ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
