from flask import Flask

server = Flask(__name__)


@server.get("/")
def home():
    return "configured"
