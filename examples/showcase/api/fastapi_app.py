"""A FastAPI app (ASGI), mounted at /api/fastapi_app like the Flask one."""

from fastapi import FastAPI

app = FastAPI(docs_url="/api/fastapi_app/docs", openapi_url="/api/fastapi_app/openapi.json")

ITEMS = {1: "keyboard", 2: "mouse"}


@app.get("/api/fastapi_app/items")
async def list_items():
    return {"items": [{"id": k, "name": v} for k, v in ITEMS.items()]}


@app.get("/api/fastapi_app/items/{item_id}")
async def get_item(item_id: int):
    return {"id": item_id, "name": ITEMS.get(item_id)}
