"""Every other path under /api (/api/books/list, /api/1024): [[default]] matches one or more
segments. More specific routes (/api/hello, /api/users/[id], /api/flaskapp) win."""

import json
from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"error": "no such API", "path": self.path}).encode("utf-8")
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
