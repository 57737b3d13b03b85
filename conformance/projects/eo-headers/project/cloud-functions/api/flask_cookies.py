from flask import Flask, jsonify, request

app = Flask(__name__)


@app.route("/", defaults={"rest": ""})
@app.route("/<path:rest>")
def cookies(rest):
    resp = jsonify(cookies=request.cookies.to_dict(), accept=request.headers.getlist("X-Multi"))
    resp.set_cookie("a", "1")
    resp.set_cookie("b", "2", httponly=True)
    return resp
