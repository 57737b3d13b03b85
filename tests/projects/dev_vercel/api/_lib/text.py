"""Helper module (never a route): imported by api/hello.py only."""

GREETING = "hello v1"
