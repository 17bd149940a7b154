"""Open Inference Protocol v2 over HTTP (KServe / Triton): health, server and model metadata, readiness and infer.

Requests and answers follow the protocol's JSON shapes, plus Triton's binary tensor extension, so
tritonclient.http and KServe clients call the zoo as they would call Triton. The routes only carry HTTP:
decoding, checks and encoding are serve/v2_codec.py's.
"""

from __future__ import annotations

import time

from flask import Blueprint, Response, current_app, g, jsonify, request

from zoo.exports.runtimes import Runtime
from zoo.serve.checks import parse_json
from zoo.serve.context import request_limits, served_models, served_runtime
from zoo.serve.metrics import record_inference
from zoo.serve.statistics import ARRIVED, Durations, record_failure, record_success
from zoo.serve.v2_codec import (
    V2_HEADER_LENGTH,
    decode_request,
    encode_response,
    model_metadata,
    run,
    server_metadata,
    split_body,
)

v2 = Blueprint("v2", __name__, url_prefix="/v2")


def readiness() -> tuple[Response, int]:
    """200 once every model is loaded and has answered a warm-up inference, else 503."""
    ready = served_models().ready
    return jsonify(ready=ready), 200 if ready else 503


@v2.get("/health/live")
def live() -> Response:
    return jsonify(live=True)


v2.add_url_rule("/health/ready", "ready", readiness)


@v2.get("")
def server() -> Response:
    return jsonify(server_metadata())


@v2.get("/models/<name>")
@v2.get("/models/<name>/versions/<version>")
def metadata(name: str, version: str | None = None) -> Response:
    runtime = served_runtime(name, version)
    return jsonify(model_metadata(name, runtime, list(served_models().versions(name))))


@v2.get("/models/<name>/ready")
@v2.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response | tuple[Response, int]:
    """200 with ready true for a served version; 503 with ready false for a stored one that failed to open."""
    if version is not None and served_models().is_failed(name, version):
        return jsonify(name=name, version=version, ready=False), 503
    runtime = served_runtime(name, version)
    return jsonify(name=name, version=str(runtime.version), ready=served_models().ready)


@v2.post("/models/<name>/infer")
@v2.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    runtime = served_runtime(name, version)
    # Arrival is when the front had the whole body (its queue follows); without the front, when Flask took it.
    arrived = request.environ.get(ARRIVED) or g.zoo_started
    started = time.perf_counter()
    try:
        response, decoded, ran, items = _infer(runtime, name)
    except Exception:
        record_failure(runtime.name, str(runtime.version), time.perf_counter() - arrived)
        raise
    done = time.perf_counter()
    record_success(runtime.name, str(runtime.version), items, done - arrived,
                   Durations(started - arrived, decoded - started, ran - decoded, done - ran))
    return response


def _infer(runtime: Runtime, name: str) -> tuple[Response, float, float, int]:
    """The answer, the times decoding and the run ended, and the batch size (for the statistics)."""
    header, binary = split_body(request.get_data(cache=False), request.headers.get(V2_HEADER_LENGTH))
    decoded = decode_request(parse_json(header), binary, runtime, request_limits())
    started = time.perf_counter()
    result = run(runtime, decoded.batch)
    ran = time.perf_counter()
    record_inference(runtime, ran - started)
    answer, data = encode_response(name, runtime, decoded.id, result, decoded.binary_output)
    if not decoded.binary_output:
        return jsonify(answer), started, ran, len(decoded.batch)
    document = current_app.json.dumps(answer).encode()  # the same writer as every JSON answer
    response = Response(document + data, mimetype="application/octet-stream")
    response.headers[V2_HEADER_LENGTH] = str(len(document))
    return response, started, ran, len(decoded.batch)
