"""A plain AWS-Lambda-style handler returning the event it saw."""
import base64
import json


def handler(event, context):
    path = event["rawPath"]
    if path.endswith("/png"):
        with open("static/logo.png", "rb") as f:
            data = f.read()
        return {"statusCode": 200, "headers": {"Content-Type": "image/png"},
                "body": base64.b64encode(data).decode(), "isBase64Encoded": True}
    if path.endswith("/text"):
        return "just text"
    if path.endswith("/dict"):
        return {"hello": "world"}
    body = {"event": event, "remaining": context.get_remaining_time_in_millis(),
            "function_name": context.function_name}
    return {
        "statusCode": 201,
        "headers": {"Content-Type": "application/json"},
        "multiValueHeaders": {"X-Multi": ["1", "2"]},
        "cookies": ["a=1; Path=/", "b=2; Path=/"],
        "body": json.dumps(body),
    }
