"""/api/loud?size=N prints one line of N 'x' characters to stdout, then answers."""

from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        size = int(self.path.split("size=")[1]) if "size=" in self.path else 10
        print("<" + "x" * size + ">", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass
