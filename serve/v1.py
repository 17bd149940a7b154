"""The zoo's own routes: model listing, metadata, and prediction per model and version (latest unless pinned)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, request

from zoo.catalog import describe
from zoo.serve.checks import interface
from zoo.serve.context import request_limits, served_models, served_runtime
from zoo.serve.forms import FORMS
from zoo.serve.metrics import record_inference

v1 = Blueprint("v1", __name__, url_prefix="/v1")


def model_metadata(name: str) -> dict[str, Any]:
    """What a client needs to call a served model: its tensors, form, preprocessing and served versions."""
    runtimes = served_models().versions(name)
    latest = runtimes[max(runtimes)]
    described = describe(name, [runtime.manifest for runtime in runtimes.values()])
    entry = described.entry
    return {
        "name": name,
        "summary": entry["summary"],
        "task": entry["task"],
        "form": entry["form"],
        "input": entry["input"],
        "output": entry["output"],
        "preprocessing": entry["preprocessing"],
        "backend": latest.backend,
        "latest_version": latest.version,
        "versions": [{**summary, "backend": runtime.backend}
                     for summary, runtime in zip(described.versions, runtimes.values(), strict=True)],
        "predict": f"/v1/models/{name}/predict",
    }


@v1.get("/models")
def list_models() -> Response:
    return jsonify(models=[model_metadata(name) for name in served_models().names()])


@v1.get("/models/<name>")
def get_model(name: str) -> Response:
    return jsonify(model_metadata(name))


@v1.post("/models/<name>/predict")
@v1.post("/models/<name>/versions/<version>/predict")
def predict(name: str, version: str | None = None) -> Response:
    runtime = served_runtime(name, version)
    form = FORMS[interface(runtime.spec).form]
    batch, batched = form.read(request, runtime.spec, request_limits())
    started = time.perf_counter()
    answer = form.answer(runtime, batch, batched)
    record_inference(runtime, time.perf_counter() - started)
    return jsonify({"model": runtime.name, "version": runtime.version, "backend": runtime.backend, **answer})
