"""The floor under `zoo serve`: two apps that do nearly nothing, for benchmarks/serve_load.py to run on granian beside
the zoo in the same run, so that the zoo's requests/s and p99 read as a fraction of what the stack allows.

- `raw_asgi`: an ASGI app that reads the body and returns a fixed v2 answer (granian's ASGI interface).
- `flask_orjson`: a Flask app that parses the same body with orjson and returns the same fixed answer (granian's WSGI
  interface, one blocking thread): the least a Flask route can do with a v2 JSON request.
"""

from __future__ import annotations

from typing import Any

import orjson
from flask import Flask, Response, request

# What the zoo answers for one mnist-mlp digit: ten probabilities.
ANSWER = orjson.dumps(
    {
        "model_name": "mnist-mlp",
        "model_version": "1",
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 10], "data": [0.1] * 10}],
    }
)
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def raw_asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Read the whole body, answer ANSWER."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


flask_orjson = Flask("floor")


@flask_orjson.post("/v2/models/<name>/infer")
def infer(name: str) -> Response:
    orjson.loads(request.get_data(cache=False))
    return Response(ANSWER, mimetype="application/json")


@flask_orjson.get("/v2/health/ready")
def ready() -> Response:
    return Response(b'{"ready": true}', mimetype="application/json")
