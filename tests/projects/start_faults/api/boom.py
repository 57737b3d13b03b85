"""Raises with a secret in the message (the client must not see it in production)."""

from http.server import BaseHTTPRequestHandler


class handler(BaseHTTPRequestHandler):
    def do_GET(self):
        raise ValueError("postgres://admin:s3cret@db/prod")
