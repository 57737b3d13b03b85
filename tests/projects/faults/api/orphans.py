"""Double-forks a `sleep 30` that outlives the request (an orphan) and answers its pid; ?ok=1
forks nothing."""

from http.server import BaseHTTPRequestHandler

from _forks import orphan


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        body = b"orphans ok" if "ok=1" in self.path else b"%d" % orphan()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
