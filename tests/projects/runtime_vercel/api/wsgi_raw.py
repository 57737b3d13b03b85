"""A raw PEP 3333 application exercising streaming, close(), file_wrapper, write()."""
import json
import time

CLOSED = []


class Stream:
    def __init__(self, label):
        self.label = label

    def __iter__(self):
        for i in range(3):
            yield ("chunk%d|%.3f\n" % (i, time.time())).encode()
            if i < 2:
                time.sleep(0.3)

    def close(self):
        CLOSED.append(self.label)


class Endless:
    def __iter__(self):
        while True:
            yield b"data: tick\n\n"
            time.sleep(0.05)

    def close(self):
        CLOSED.append("endless")


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path.endswith("/stream"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Stream("stream")
    if path.endswith("/endless"):
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return Endless()
    if path.endswith("/cookies"):
        start_response("200 OK", [("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("Content-Length", "2")])
        return [b"ok"]
    if path.endswith("/file"):
        start_response("200 OK", [("Content-Type", "image/png")])
        return environ["wsgi.file_wrapper"](open("static/logo.png", "rb"), 1024)
    if path.endswith("/echo"):
        data = environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return [data]
    if path.endswith("/write"):
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"first,")
        return [b"second"]
    if path.endswith("/excinfo"):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("late failure")
        except ValueError:
            import sys
            start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"recovered"]
    if path.endswith("/boom"):
        raise RuntimeError("kaboom")
    keys = ("REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE", "CONTENT_LENGTH",
            "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST",
            "HTTP_X_MULTI", "wsgi.url_scheme", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
            "fnserve.route_params")
    body = json.dumps({k: environ.get(k) for k in keys}).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]
