"""A Flask app mounted at /api/mounted (EdgeOne: a framework app under a folder): echoes what the
WSGI environ says of the request (SCRIPT_NAME from the mount, PATH_INFO below it)."""

from flask import Flask, jsonify, request, url_for

app = Flask(__name__)


@app.route("/", methods=["GET", "POST", "HEAD"])
@app.route("/<path:rest>", methods=["GET", "POST", "HEAD"])
def echo(rest=""):
    environ = request.environ
    return jsonify(script_name=environ["SCRIPT_NAME"], path_info=environ["PATH_INFO"],
                   query=environ.get("QUERY_STRING", ""), method=request.method, rest=rest,
                   url=url_for("echo", rest="x"), body_length=len(request.get_data()),
                   params=environ.get("fnserve.route_params"))
