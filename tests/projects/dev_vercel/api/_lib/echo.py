"""Shared helper for handler functions: answer JSON."""

import json
import os


def reply(handler, payload, status=200):
    body = json.dumps({**payload, "pid": os.getpid()}).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
