import time

from flask import Flask, Response

app = Flask(__name__)


@app.get("/")
def events():
    def generate():
        for i in range(3):
            yield f"id: {i}\ndata: tick {i}\n\n"
            time.sleep(0.3)

    return Response(generate(), mimetype="text/event-stream", headers={"Cache-Control": "no-cache"})
