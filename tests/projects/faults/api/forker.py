"""Starts a child `sleep 30` and a double-forked orphan `sleep 30`, then per ?mode=: "exit" exits
its process (os._exit(1)), "hang" sleeps past its maxDuration of 3 s (vercel.json; not 1 s: the
forks alone may take that on a loaded machine), anything else answers "<child pid> <orphan pid>"
(the instance lives on)."""

import os
import time
from http.server import BaseHTTPRequestHandler

from _forks import child, orphan


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        pids = (child(), orphan())
        if "mode=exit" in self.path:
            os._exit(1)
        if "mode=hang" in self.path:
            time.sleep(30)
        body = b"%d %d" % pids
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass
