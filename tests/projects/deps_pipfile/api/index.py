from http.server import BaseHTTPRequestHandler
class handler(BaseHTTPRequestHandler):
    pass
