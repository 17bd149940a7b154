"""Open Inference Protocol v2 over HTTP (KServe / Triton): health, server and model metadata, readiness and infer.

Requests and answers follow the protocol's JSON shapes, plus Triton's binary tensor extension, so
tritonclient.http and KServe clients call the zoo as they would call Triton. The routes only carry HTTP:
decoding, checks and encoding are serve/v2_codec.py's.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

import orjson
from flask import Blueprint, Flask, Response, g, jsonify, request

from zoo.exports.runtimes import Runtime
from zoo.serve.checks import RequestLimits, parse_json
from zoo.serve.context import LIMITS_KEY, MODELS_KEY, request_limits, served_models, served_runtime
from zoo.serve.errors import error_answer
from zoo.serve.json_provider import OPTIONS as JSON_OPTIONS
from zoo.serve.metrics import observe_request, record_inference
from zoo.serve.repository import ServedModels
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
    return jsonify(model_metadata(served_models().description(name), runtime))


@v2.get("/models/<name>/ready")
@v2.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None) -> Response | tuple[Response, int]:
    """200 with ready true for a served version; 503 with ready false for a stored one that failed to open."""
    if version is not None and served_models().is_failed(name, version):
        return jsonify(name=name, version=version, ready=False), 503
    runtime = served_runtime(name, version)
    return jsonify(name=name, version=str(runtime.version), ready=served_models().ready)


INFER_ROUTES = ("/v2/models/<name>/infer", "/v2/models/<name>/versions/<version>/infer")  # as /metrics names them


@v2.post("/models/<name>/infer")
@v2.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None) -> Response:
    runtime = served_runtime(name, version)
    # Arrival is when the front had the whole body (its queue follows); without the front, when Flask took it.
    arrived = request.environ.get(ARRIVED) or g.zoo_started
    answer = answer_infer(runtime, name, request.get_data(cache=False), request.headers.get(V2_HEADER_LENGTH),
                          request_limits(), arrived)
    response = Response(answer.body, mimetype=answer.content_type)
    response.headers.update(answer.headers)
    return response


@dataclass(frozen=True)
class InferAnswer:
    """A v2 infer answer's body, content type and own headers (Inference-Header-Content-Length for binary data)."""

    body: bytes
    content_type: str
    headers: dict[str, str]


def answer_infer(runtime: Runtime, name: str, body: bytes, header_length: str | None, limits: RequestLimits,
                 arrived: float) -> InferAnswer:
    """The answer of `runtime` to one v2 infer request's body, its statistics recorded (a failure too, re-raised):
    the one path of /v2 infer over HTTP, whether Flask routed it or the ASGI front (DirectInfer)."""
    started = time.perf_counter()
    try:
        header, binary = split_body(body, header_length)
        decoded = decode_request(parse_json(header), binary, runtime, limits)
        ran_from = time.perf_counter()
        result = run(runtime, decoded.batch)
        ran = time.perf_counter()
        record_inference(runtime, ran - ran_from)
        document, data = encode_response(name, runtime, decoded.id, result, decoded.binary_output)
        text = orjson.dumps(document, option=JSON_OPTIONS)
        if decoded.binary_output:
            answer = InferAnswer(text + data, "application/octet-stream", {V2_HEADER_LENGTH: str(len(text))})
        else:
            answer = InferAnswer(text + b"\n", "application/json", {})  # with a newline, as jsonify writes
    except Exception:
        record_failure(runtime.name, str(runtime.version), time.perf_counter() - arrived)
        raise
    done = time.perf_counter()
    record_success(runtime.name, str(runtime.version), len(decoded.batch), done - arrived,
                   Durations(started - arrived, ran_from - started, ran - ran_from, done - ran))
    return answer


class DirectInfer:
    """/v2 infer answered straight from the ASGI front, without Flask's request context, routing and hooks (about
    half a request's cost): the same answer_infer, error mapping (serve/errors.py), headers, /metrics counts and
    access-log line as the Flask route gives. The front hands over only POSTs to an infer route with a complete
    body and no Content-Encoding; everything else goes through Flask."""

    ROUTE = re.compile(r"/v2/models/([^/]+)/(?:versions/([^/]+)/)?infer")

    def __init__(self, app: Flask) -> None:
        self.served: ServedModels = app.extensions[MODELS_KEY]
        self.limits: RequestLimits = app.extensions[LIMITS_KEY]
        self.access_log = app.config["ACCESS_LOG"]

    def match(self, method: str, path: str, headers: list[tuple[str, str]]) -> re.Match[str] | None:
        if method != "POST" or any(name.lower() == "content-encoding" for name, _ in headers):
            return None
        return self.ROUTE.fullmatch(path)

    def __call__(self, route: re.Match[str], path: str, headers: list[tuple[str, str]], body: bytes, arrived: float,
                 remote: str) -> tuple[int, list[tuple[str, str]], list[bytes]]:
        name, version = route[1], route[2]
        header_length = next((value for key, value in headers if key.lower() == "inference-header-content-length"),
                             None)
        found = ""
        try:
            runtime = self.served.get(name, version)
            found = str(runtime.version)
            answer = answer_infer(runtime, name, body, header_length, self.limits, arrived)
            status, content_type, text, extra = 200, answer.content_type, answer.body, answer.headers
        except Exception as error:  # noqa: BLE001 (every error becomes an answer, as Flask's handlers make it)
            status, message = error_answer(error)
            content_type, text, extra = "application/json", orjson.dumps({"error": message}) + b"\n", {}
        observe_request(self.served, name, found, INFER_ROUTES[version is not None], status,
                        time.perf_counter() - arrived, self.access_log, remote, "POST", path, len(text))
        response_headers = [("content-type", content_type), ("content-length", str(len(text))), *extra.items(),
                            ("x-content-type-options", "nosniff")]
        return status, response_headers, [text]
