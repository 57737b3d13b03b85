"""A helper module: imported by api/hello.py and api/flask_app.py, never a route itself
(files and folders starting with `_` are never entrypoints)."""

from __future__ import annotations


def greet(name: str | None = None) -> str:
    return f"Hello, {name or 'world'}!"
