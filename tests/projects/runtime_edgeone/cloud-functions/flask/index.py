"""A route folder named `flask/` (EdgeOne aborts the build on this): `import flask` is still Flask."""
import json
from http.server import BaseHTTPRequestHandler

import flask


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"flask_file": flask.__file__, "has_Flask": hasattr(flask, "Flask"),
                           "module": __name__}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
