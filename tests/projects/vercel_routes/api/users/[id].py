from http.server import BaseHTTPRequestHandler

from lib.db import get_user


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(repr(get_user(self.path)).encode())

    def do_DELETE(self):
        self.send_response(204)
        self.end_headers()
