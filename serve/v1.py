"""The zoo's own routes: model listing, metadata, and prediction per model and version (latest unless pinned)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, jsonify, request

from serve.models import served_models
from serve.payloads import digit_batch, regression_batch
from zoo.errors import InvalidInputError
from zoo.inference import classify_digits, predict_values

v1 = Blueprint("v1", __name__, url_prefix="/v1")


def model_metadata(name: str) -> dict[str, Any]:
    """What a client needs to call a served model: its tensors, task, preprocessing and served versions."""
    latest = served_models().get(name)
    spec = latest.spec
    return {
        "name": name,
        "summary": spec.summary,
        "task": spec.task,
        "input": spec.input.to_dict(),
        "output": spec.output.to_dict(),
        "preprocessing": spec.preprocessing,
        "backend": latest.backend,
        "latest_version": latest.version,
        "versions": [
            {"version": v, "recipe": r.manifest["recipe"]["name"], "metrics": r.manifest.get("metrics", {}),
             "created": r.manifest.get("created")}
            for v, r in served_models().runtimes[name].items()
        ],
        "predict": f"/v1/models/{name}/predict",
    }


@v1.get("/models")
def list_models():
    return jsonify(models=[model_metadata(name) for name in served_models().names()])


@v1.get("/models/<name>")
def get_model(name: str):
    return jsonify(model_metadata(name))


@v1.post("/models/<name>/predict")
@v1.post("/models/<name>/versions/<version>/predict")
def predict(name: str, version: str | None = None):
    runtime = served_models().get(name, version)
    answer: dict[str, Any] = {"model": runtime.name, "version": runtime.version, "backend": runtime.backend}
    if runtime.spec.task == "image-classification":
        batch, batched = digit_batch(request)
        predictions = classify_digits(runtime, batch)
        answer.update({"predictions": predictions} if batched else predictions[0])
    elif runtime.spec.task == "regression" and runtime.spec.input.shape[1:] == (1,):
        batch, batched = regression_batch(request)
        values = predict_values(runtime, batch)
        answer["y"] = values if batched else values[0]
    else:
        raise InvalidInputError(f"{name} has no /v1 predict form; call /v2/models/{name}/infer with its tensors")
    return jsonify(answer)

