from sanic import Sanic
from sanic.response import json, text

app = Sanic("eo_sanic_catchall")


@app.get("/")
async def index(request):
    return json({"route": "index", "path": request.path})


@app.get("/items/<item_id:int>")
async def item(request, item_id):
    return json({"route": "item", "item": item_id, "args": {k: v for k, v in request.args.items()}})


@app.post("/echo")
async def echo(request):
    return text(request.body.decode(), headers={"x-echo-length": str(len(request.body))})
