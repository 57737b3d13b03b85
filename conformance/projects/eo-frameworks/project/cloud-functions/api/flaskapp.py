from flask import Flask, jsonify, request, url_for

app = Flask(__name__)


@app.get("/users")
def users():
    return jsonify(
        script_name=request.environ["SCRIPT_NAME"],
        path_info=request.environ["PATH_INFO"],
        url_for=url_for("users"),
        args=request.args.to_dict(),
    )


@app.get("/")
def root():
    return jsonify(script_name=request.environ["SCRIPT_NAME"], path_info=request.environ["PATH_INFO"])
