from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/items/{item_id}")
def item(item_id: int, q: str = ""):
    return {"item": item_id, "q": q}


@app.get("/scope")
def scope(request: Request):
    s = request.scope
    return {"path": s["path"], "raw_path": s["raw_path"].decode("latin-1"), "root_path": s.get("root_path", "")}
