from http.server import BaseHTTPRequestHandler

from api._lib.echo import reply


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        reply(self, {"path": self.path})
