"""Zero-config single app (Vercel "Flask on Vercel"): one app mounted at /."""

from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/", defaults={"rest": ""})
@app.route("/<path:rest>")
def echo(rest):
    return jsonify(path=request.path, query=request.query_string.decode())
