import json


def handler(event, context):
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"kind": "lambda", "rawPath": event["rawPath"], "rawQueryString": event["rawQueryString"]}),
    }
