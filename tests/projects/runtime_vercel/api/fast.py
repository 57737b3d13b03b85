"""A FastAPI app: lifespan, background task, SSE stream, WebSocket echo, cookies."""
import asyncio
import contextlib
import time

from fastapi import BackgroundTasks, FastAPI, Request, Response, WebSocket
from fastapi.responses import StreamingResponse

COUNTS = {"startup": 0, "shutdown": 0}
JOBS = []


@contextlib.asynccontextmanager
async def lifespan(app):
    COUNTS["startup"] += 1
    yield {"greeting": "hi"}
    COUNTS["shutdown"] += 1


app = FastAPI(lifespan=lifespan)


@app.get("/api/fast/count")
async def count(request: Request):
    return {"startup": COUNTS["startup"], "shutdown": COUNTS["shutdown"], "state": request.state.greeting}


async def job():
    await asyncio.sleep(0.3)
    JOBS.append(time.monotonic())


@app.get("/api/fast/bg")
async def background(tasks: BackgroundTasks):
    tasks.add_task(job)
    return {"queued": time.monotonic()}


@app.get("/api/fast/sse")
async def sse():
    async def events():
        for i in range(3):
            yield "data: chunk%d|%.3f\n\n" % (i, time.time())
            if i < 2:
                await asyncio.sleep(0.3)

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/api/fast/cookies")
async def cookies():
    response = Response(b"ok", media_type="text/plain")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


@app.post("/api/fast/json")
async def echo(request: Request):
    data = await request.json()
    data["seen"] = True
    return data


@app.get("/api/fast/query")
async def query(request: Request):
    return {"raw": request.scope["query_string"].decode("latin-1"), "params": request.scope.get("fnserve.route_params")}


@app.websocket("/api/fast/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    while True:
        text = await websocket.receive_text()
        if text == "bye":
            await websocket.close()
            return
        await websocket.send_text("echo:" + text)
