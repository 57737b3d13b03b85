"""GET /api/users/42: a dynamic segment. As on Vercel, the parameter is appended to the query
string (/api/users/42 reaches the handler as /api/users/42?id=42)."""

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        user_id = parse_qs(urlsplit(self.path).query).get("id", [""])[-1]
        body = json.dumps({"id": user_id, "name": f"user {user_id}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
