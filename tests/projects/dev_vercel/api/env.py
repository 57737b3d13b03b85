import os
from http.server import BaseHTTPRequestHandler

from api._lib.echo import reply


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        reply(self, {"secret": os.environ.get("DEV_SECRET_TOKEN"), "local": os.environ.get("DEV_LOCAL_ONLY")})
