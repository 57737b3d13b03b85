# A user module named like the stdlib's json: fnserve must never import it in place of json.
raise ImportError("the project's json.py was imported in place of the standard library's json")
