from http.server import BaseHTTPRequestHandler

SETTINGS = {"retries": 3}
TIMEOUT = SETTINGS["timeout"]  # a KeyError at import: the dashboard shows this traceback


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(204)
        self.end_headers()
