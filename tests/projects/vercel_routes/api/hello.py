from http.server import BaseHTTPRequestHandler

from api._utils import shout


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(shout("hello").encode())

    def do_POST(self):
        self.send_response(201)
        self.end_headers()
