from http.server import BaseHTTPRequestHandler

from api._lib.echo import reply
from api._lib.text import GREETING


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        reply(self, {"message": GREETING, "path": self.path})
