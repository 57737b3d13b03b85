from flask import Flask, jsonify

from shared.store import USERS

app = Flask(__name__)


@app.route("/users")
def users():
    return jsonify(USERS)
