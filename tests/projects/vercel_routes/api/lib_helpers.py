"""Not an entrypoint: exports no app/application/handler, so it is a helper module."""
import json


def dumps(obj):
    return json.dumps(obj, indent=2)
