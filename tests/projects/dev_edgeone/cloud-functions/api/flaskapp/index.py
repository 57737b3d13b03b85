from flask import Flask, jsonify, request, url_for

app = Flask(__name__)


@app.route("/")
@app.route("/<path:rest>")
def echo(rest=""):
    return jsonify(path_info=request.environ["PATH_INFO"], script_name=request.environ["SCRIPT_NAME"],
                   url=url_for("echo", rest="x"))
