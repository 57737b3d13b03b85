"""A Flask app that reports what it sees (used in both layouts)."""
import flask
from flask import Flask, jsonify, request, url_for

app = Flask(__name__)


@app.route("/users")
def users():
    return jsonify(path=request.path, script_root=request.script_root, url=url_for("users"), endpoint="users")


@app.route("/", defaults={"rest": ""})
@app.route("/<path:rest>")
def anything(rest):
    return jsonify(path=request.path, script_root=request.script_root, url=url_for("users"), endpoint="anything",
                   flask_file=flask.__file__)


@app.post("/json")
def echo_json():
    data = request.get_json()
    data["seen"] = True
    return jsonify(data)
