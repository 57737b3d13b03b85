import os
from http.server import BaseHTTPRequestHandler

from api._lib.echo import reply


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if "die=1" in self.path:
            os._exit(3)
        reply(self, {"alive": True})
