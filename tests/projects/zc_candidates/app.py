"""Not an entry: the factory is never called at module level."""
from flask import Flask


def create_app():
    return Flask(__name__)
