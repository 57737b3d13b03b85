"""fnserve: a self-hosted runtime for Python serverless functions.

This module imports nothing on purpose: the worker process loads ``fnserve.runtime`` inside a
function's own environment, where none of fnserve's dependencies exist.
"""

__version__ = "0.1.0"
