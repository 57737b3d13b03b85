"""GET /api/files/a/b/c.txt: a catch-all ([...path] matches one or more segments). Vercel passes
the matched path in the query under the name written in the brackets: "...path"."""

import json
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        path = parse_qs(urlsplit(self.path).query).get("...path", [""])[-1]
        body = json.dumps({"path": path, "segments": path.split("/")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)
