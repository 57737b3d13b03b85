from flask import Flask

app = Flask(__name__)


@app.route("/<path:p>")
def anything(p):
    return p
