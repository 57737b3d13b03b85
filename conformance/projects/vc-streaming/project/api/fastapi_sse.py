import asyncio

from fastapi import FastAPI
from fastapi.responses import StreamingResponse

app = FastAPI()


@app.get("/api/fastapi_sse")
async def events():
    async def generate():
        for i in range(3):
            yield f"id: {i}\ndata: tick {i}\n\n"
            await asyncio.sleep(0.3)

    return StreamingResponse(generate(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
