"""A Flask app. In the Vercel layout an app sees the full request path, so its routes include
the /api/flask_app prefix; it also receives every sub-path below /api/flask_app (a mount)."""

from flask import Flask, jsonify

from api._lib.greet import greet

app = Flask(__name__)


@app.get("/api/flask_app")
def index():
    return jsonify(framework="flask", message=greet())


@app.get("/api/flask_app/hello/<name>")
def hello(name: str):
    return jsonify(framework="flask", message=greet(name))
