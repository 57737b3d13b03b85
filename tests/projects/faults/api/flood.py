"""Prints 4 MB to stdout per request (2,000 lines of 1,000 characters and one line of 2 MB)
unless ?ok=1, then answers."""

from http.server import BaseHTTPRequestHandler

LINE = "flood " + "x" * 994


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if "ok=1" not in self.path:
            for _ in range(2000):
                print(LINE)
            print("y" * (2 << 20))
            print("flood done", flush=True)
        self.send_response(200)
        self.send_header("Content-Length", "8")
        self.end_headers()
        self.wfile.write(b"flood ok")

    def log_message(self, *args):
        pass
