import json


def app(environ, start_response):
    body = json.dumps({"script_name": environ["SCRIPT_NAME"], "path_info": environ["PATH_INFO"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]
