"""Open Inference Protocol v2 (KServe / Triton HTTP): health, server and model metadata, readiness and infer.

Requests and answers follow the protocol's JSON shapes, plus Triton's binary tensor extension, so
tritonclient.http and KServe clients call the zoo as they would call Triton.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from flask import Blueprint, Response, current_app, g, jsonify, request

from zoo.exports.runtimes import Runtime
from zoo.serve.metrics import record_inference
from zoo.serve.models import served_models, served_runtime
from zoo.serve.payloads import V2_HEADER_LENGTH, v2_datatype, v2_output_binary, v2_request, v2_shape
from zoo.serve.statistics import ARRIVED, Durations, record_failure, record_success

v2 = Blueprint("v2", __name__, url_prefix="/v2")


def readiness():
    """200 once every model is loaded and has answered a warm-up inference, else 503."""
    ready = served_models().ready
    return jsonify(ready=ready), 200 if ready else 503


@v2.get("/health/live")
def live():
    return jsonify(live=True)


v2.add_url_rule("/health/ready", "ready", readiness)


@v2.get("")
def server_metadata():
    from importlib.metadata import version

    return jsonify(name="zoo", version=version("zoo"), extensions=["binary_tensor_data", "statistics"])


@v2.get("/models/<name>")
@v2.get("/models/<name>/versions/<version>")
def model_metadata(name: str, version: str | None = None):
    runtime = served_runtime(name, version)
    def tensor(spec):
        return {"name": spec.name, "datatype": v2_datatype(spec), "shape": v2_shape(spec.shape)}
    return jsonify(
        name=name,
        versions=[str(v) for v in served_models().versions(name)],
        platform=runtime.platform,
        inputs=[tensor(runtime.spec.input)],
        outputs=[tensor(runtime.spec.output)],
        # The platform is the same for every ONNX file; which one answers (float32, int8, float16) is said here.
        parameters={"backend": runtime.backend, "file": runtime.file or runtime.manifest["weights"]["file"]},
    )


@v2.get("/models/<name>/ready")
@v2.get("/models/<name>/versions/<version>/ready")
def model_ready(name: str, version: str | None = None):
    """200 with ready true for a served version; 503 with ready false for a stored one that failed to open."""
    if version is not None and served_models().is_failed(name, version):
        return jsonify(name=name, version=version, ready=False), 503
    runtime = served_runtime(name, version)
    return jsonify(name=name, version=str(runtime.version), ready=served_models().ready)


@v2.post("/models/<name>/infer")
@v2.post("/models/<name>/versions/<version>/infer")
def infer(name: str, version: str | None = None):
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
    """The answer, the times decoding and the run ended, and the batch size."""
    batch, document = v2_request(request, runtime)
    binary = v2_output_binary(document, runtime.spec.output.name)
    started = time.perf_counter()
    result = np.ascontiguousarray(runtime.run(batch), dtype="<f4")
    ran = time.perf_counter()
    record_inference(runtime, ran - started)
    output: dict[str, Any] = {"name": runtime.spec.output.name, "datatype": v2_datatype(runtime.spec.output),
                              "shape": list(result.shape)}
    answer: dict[str, Any] = {"model_name": name, "model_version": str(runtime.version), "outputs": [output]}
    if "id" in document:
        answer["id"] = document["id"]
    if not binary:
        output["data"] = result.reshape(-1).tolist()
        return jsonify(answer), started, ran, len(batch)
    output["parameters"] = {"binary_data_size": result.nbytes}
    header = current_app.json.dumps(answer).encode()  # the same writer as every JSON answer
    response = Response(header + result.tobytes(), mimetype="application/octet-stream")
    response.headers[V2_HEADER_LENGTH] = str(len(header))
    return response, started, ran, len(batch)
