"""A Vercel-style handler class exercising the BaseHTTPRequestHandler API."""
import json
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit


STOPPED = []


class handler(BaseHTTPRequestHandler):
    def _send(self, status, body, content_type=None, extra=()):
        self.send_response(status)
        if content_type:
            self.send_header("Content-Type", content_type)
        for name, value in extra:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        case = urlsplit(self.path).path.rstrip("/").rsplit("/", 1)[-1]
        if case == "cookies":
            self._send(200, b"ok", "text/plain", [("Set-Cookie", "a=1; Path=/"), ("Set-Cookie", "b=2; Path=/")])
        elif case == "nocontenttype":
            self._send(200, b"plain bytes")
        elif case == "png":
            with open("static/logo.png", "rb") as f:
                self._send(200, f.read(), "image/png")
        elif case == "stream":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            for i in range(3):
                self.wfile.write(("chunk%d|%.3f\n" % (i, time.time())).encode())
                self.wfile.flush()
                if i < 2:
                    time.sleep(0.3)
        elif case == "error":
            self.send_error(404, "nothing here")
        elif case == "raw":
            self.wfile.write(b"HTTP/1.1 201 Created\r\nX-Raw: yes\r\nContent-Length: 3\r\n\r\nraw")
        elif case == "chunked":
            self.protocol_version = "HTTP/1.1"
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif case == "endless":
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            try:
                for _ in range(2000):  # bounded: 100 s at most
                    self.wfile.write(b"data: tick\n\n")
                    self.wfile.flush()
                    time.sleep(0.05)
            except BrokenPipeError:
                STOPPED.append("endless")
                raise
        elif case == "boom":
            raise RuntimeError("kaboom")
        elif case == "slow":
            time.sleep(0.5)
            self._send(200, b"slow", "text/plain")
        else:
            info = {
                "path": self.path,
                "command": self.command,
                "version": self.request_version,
                "requestline": self.requestline,
                "client": list(self.client_address),
                "host": self.headers.get("Host"),
                "x_multi": self.headers.get_all("X-Multi"),
            }
            self._send(200, json.dumps(info).encode(), "application/json")

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(length)
        if self.path.endswith("/json"):
            obj = json.loads(data.decode("utf-8"))
            obj["seen"] = True
            self._send(200, json.dumps(obj, ensure_ascii=False).encode("utf-8"), "application/json; charset=utf-8")
        else:
            self._send(200, data, "application/octet-stream")
