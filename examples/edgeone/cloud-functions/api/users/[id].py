"""GET /api/users/1024: a dynamic segment. self.path is the full request path (EdgeOne does not
strip it), so the id is its last segment."""

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        user_id = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        body = json.dumps({"user_id": user_id}).encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_DELETE(self):
        self.send_response(204)
        self.end_headers()
