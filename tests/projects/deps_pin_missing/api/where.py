import sys
from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            import click  # fnserve's own venv has it; the project's env must not
            has = "click"
        except ImportError:
            has = "no click"
        body = f"{sys.version_info[0]}.{sys.version_info[1]} {sys.prefix} {has}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
