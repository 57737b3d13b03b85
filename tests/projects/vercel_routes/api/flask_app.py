from flask import Flask

app = Flask(__name__)


@app.get("/api/flask_app")
def index():
    return "flask"
