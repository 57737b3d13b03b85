"""A FastAPI app wrapped by Mangum: an AWS Lambda handler (seed 001)."""
from fastapi import FastAPI, Request, Response
from mangum import Mangum

app = FastAPI()


@app.get("/api/mangum_fn/cookies")
async def cookies():
    response = Response(b"ok", media_type="text/plain")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


@app.api_route("/{rest:path}", methods=["GET", "POST"])
async def anything(rest: str, request: Request):
    body = await request.body()
    return {
        "path": request.url.path,
        "query": request.scope["query_string"].decode("latin-1"),
        "cookies": dict(request.cookies),
        "body": body.decode("utf-8"),
        "method": request.method,
    }


handler = Mangum(app, lifespan="off")
