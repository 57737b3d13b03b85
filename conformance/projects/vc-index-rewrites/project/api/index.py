from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/", defaults={"rest": ""})
@app.route("/<path:rest>")
def catch_all(rest):
    return jsonify(path=request.path, script_name=request.environ["SCRIPT_NAME"],
                   query=request.query_string.decode())
