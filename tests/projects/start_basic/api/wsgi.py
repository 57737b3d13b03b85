"""A WSGI app (Flask): echoes the request id the function sees."""

from flask import Flask, request

app = Flask(__name__)


@app.route("/api/wsgi")
def index():
    return {"kind": "wsgi", "request_id": request.headers.get("x-request-id")}
