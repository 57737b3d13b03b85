"""A dynamic-segment function importing a sibling helper relatively and absolutely."""
from ._helpers import greet
import _helpers as absolute_helpers

LOADED_FROM = __file__
NAME = __name__


def app(environ, start_response):
    body = (greet(environ["fnserve.route_params"].get("id", "?")) + "|" + absolute_helpers.greet("x")).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
