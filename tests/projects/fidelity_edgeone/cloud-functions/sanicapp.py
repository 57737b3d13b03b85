"""A Sanic catch-all app in the EdgeOne layout: Sanic routes on ``raw_path`` (SPEC §3.4)."""
from sanic import Sanic
from sanic.response import json

app = Sanic("fidelity_sanic")


@app.get("/")
async def index(request):
    return json({"route": "index", "path": request.path})


@app.get("/users/<uid>")
async def user(request, uid):
    return json({"route": "user", "uid": uid, "path": request.path})


@app.get("/<rest:path>")
async def catchall(request, rest):
    return json({"route": "catchall", "rest": rest})
