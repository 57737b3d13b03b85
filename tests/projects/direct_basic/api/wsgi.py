"""A raw WSGI app: answers "wsgi <PATH_INFO>?<QUERY_STRING>"."""


def app(environ, start_response):
    body = ("wsgi %s?%s" % (environ["PATH_INFO"], environ.get("QUERY_STRING", ""))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
