"""A Vercel dynamic route (handler class): echoes what it saw as JSON: method, path (with the
query, where Vercel puts ``id``), the headers in order (a generated 16-hex request id shown as
"<generated>": it differs between two servers), and the body's length and first bytes."""

import json
import re
from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def _echo(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = []
        for name, value in self.headers.items():
            if name.lower() == "x-request-id" and re.fullmatch(r"[0-9a-f]{16}", value):
                value = "<generated>"
            headers.append([name.lower(), value])
        out = json.dumps({"method": self.command, "path": self.path, "version": self.request_version,
                          "headers": headers, "body_length": len(body), "body_start": body[:20].decode("latin-1")})
        data = out.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Echo", "users")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = _echo

    def log_message(self, *args):
        pass
