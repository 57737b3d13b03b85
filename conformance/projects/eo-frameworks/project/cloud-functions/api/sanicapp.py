from sanic import Sanic
from sanic.response import json

app = Sanic("eo_frameworks_sanic")


@app.get("/ping")
async def ping(request):
    return json({"pong": True, "path": request.path})
