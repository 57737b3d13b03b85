import os

from fastapi import FastAPI, Request, WebSocket

app = FastAPI()


@app.get("/api/fast/{rest:path}")
async def echo(rest: str, request: Request):
    return {"kind": "asgi", "path": request.url.path, "root_path": request.scope.get("root_path"),
            "query": request.url.query, "pid": os.getpid()}


@app.websocket("/api/fast/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    while True:
        text = await websocket.receive_text()
        await websocket.send_text("echo: " + text)


@app.post("/api/fast/upload")
async def upload(request: Request):
    return {"received": len(await request.body())}
