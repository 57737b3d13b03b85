import os

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/api/flask_app")
@app.route("/api/flask_app/<path:rest>")
def echo(rest=""):
    return jsonify(kind="wsgi", path=request.path, script_name=request.environ["SCRIPT_NAME"],
                   query=request.query_string.decode(), pid=os.getpid())
