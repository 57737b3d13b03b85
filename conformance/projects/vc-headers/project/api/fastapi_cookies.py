from fastapi import FastAPI, Request, Response

app = FastAPI()


@app.get("/{rest:path}")
def cookies(rest: str, request: Request, response: Response):
    response.set_cookie("a", "1")
    response.set_cookie("b", "2", httponly=True)
    return {"cookies": dict(request.cookies)}
