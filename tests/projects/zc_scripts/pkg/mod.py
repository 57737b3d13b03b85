from flask import Flask

test = Flask(__name__)


@test.get("/")
def home():
    return "scripts"
