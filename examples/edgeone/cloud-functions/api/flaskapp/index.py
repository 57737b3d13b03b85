"""A Flask app mounted at /api/flaskapp. In the EdgeOne layout the route prefix is removed
before the app sees the path: a request to /api/flaskapp/users reaches @app.route('/users')."""

from flask import Flask, jsonify, request

app = Flask(__name__)

USERS = [{"id": 1, "name": "Alice"}, {"id": 2, "name": "Bob"}]


@app.route("/users", methods=["GET"])
def get_users():
    return jsonify({"users": USERS})


@app.route("/users", methods=["POST"])
def create_user():
    data = request.get_json(silent=True) or {}
    return jsonify({"message": "User created", "user": data}), 201
