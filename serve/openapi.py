"""/openapi.json: an exact OpenAPI 3.1 description of what this server answers.

Each served model has its own paths with its own request schemas (its form's JSON body, its v2 tensor); unknown
properties are refused and declared so (`additionalProperties: false`); versions are integers >= 1; every status
the server can send is listed. `tests/test_openapi_fuzz.py` draws requests from this document and checks that
the server accepts every one the schemas call valid.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from zoo.core.registry import get_model
from zoo.core.spec import ModelSpec
from zoo.serve.models import served_models
from zoo.serve.payloads import FORMS, NUMBER, V2_HEADER_LENGTH, v2_datatype

openapi = Blueprint("openapi", __name__)


def _error(description: str) -> dict[str, Any]:
    return {"description": description + ': a JSON body {"error": "what was expected, what came"}',
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


ERRORS = {
    "400": _error("bad request"),
    "404": _error("unknown model or version, or a malformed version"),
    "413": _error("body over the size limit"),
    "408": _error("the body did not arrive within the server's body timeout; the connection is closed"),
    "415": _error("unsupported Content-Type, or a Content-Encoding such as gzip"),
    "500": _error("a fault on the server's side, such as a weights file found altered"),
    "503": {**_error("the worker's queue is full (overload): retry after the Retry-After header's seconds"),
            "headers": {"Retry-After": {"schema": {"type": "integer", "minimum": 1}}}},
}
LOOKUP_ERRORS = {key: ERRORS[key] for key in ("404", "500", "503")}
BUSY = {"503": ERRORS["503"]}
OBJECT = {"type": "object"}
VERSION_PARAM = {"name": "version", "in": "path", "required": True,
                 "schema": {"type": "integer", "minimum": 1}, "description": "a version number, without leading zeros"}


def _ok(description: str, schema: dict[str, Any] = OBJECT, media: str = "application/json") -> dict[str, Any]:
    return {"200": {"description": description, "content": {media: {"schema": schema}}}}


def _body(schema: dict[str, Any], other_media: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}, **(other_media or {})}}


def v2_request_schema(spec: ModelSpec, max_batch: int) -> dict[str, Any]:
    """The v2 infer request for `spec`: exactly one input, its name, FP32, its shape with a batch of 1..max_batch.

    JSON Schema cannot tie the number of `data` values to the product of `shape`; the description says so.
    """
    features = [{"const": dim} for dim in spec.input.features]
    tensor = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "additionalProperties": False,
        "properties": {
            "name": {"const": spec.input.name},
            "datatype": {"const": v2_datatype(spec.input)},
            "shape": {
                "type": "array",
                "prefixItems": [{"type": "integer", "minimum": 1, "maximum": max_batch}, *features],
                "items": False,
                "minItems": 1 + len(features),
            },
            "data": {
                "type": "array",
                "minItems": 1,
                "items": {"anyOf": [NUMBER, {"type": "array"}]},
                "description": "the shape's product of values, row-major, flat or nested",
            },
            "parameters": {"type": "object", "properties": {"binary_data_size": {"type": "integer", "minimum": 4}}},
        },
    }
    output = {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"const": spec.output.name},
            "parameters": {"type": "object", "properties": {"binary_data": {"type": "boolean"}}},
        },
    }
    return {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string"},
            "model_name": {"const": spec.name, "description": "as KServe's client sends it: the route's model"},
            "model_version": {"type": "string"},
            "inputs": {"type": "array", "items": tensor, "minItems": 1, "maxItems": 1},
            "outputs": {"type": "array", "items": output},
            "parameters": {"type": "object", "properties": {"binary_data_output": {"type": "boolean"}}},
        },
    }


def _tensor_out(spec: ModelSpec) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"const": spec.output.name},
            "datatype": {"const": v2_datatype(spec.output)},
            "shape": {"type": "array", "items": {"type": "integer"}},
            "data": {"type": "array", "items": NUMBER},
            "parameters": OBJECT,
        },
    }


def _model_paths(spec: ModelSpec, max_batch: int) -> dict[str, Any]:
    """Every route of one model, latest and pinned."""
    name, form = spec.name, FORMS[spec.interface.form]
    predict = {
        "requestBody": _body(form.json_schema(spec, max_batch), form.other_media),
        "responses": {
            **_ok(f"{name}'s prediction", {"type": "object", "required": ["model", "version", "backend"]}),
            **ERRORS,
        },
    }
    infer = {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": v2_request_schema(spec, max_batch)},
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"},
                    "description": f"Triton's binary tensor extension: JSON header of "
                    f"{V2_HEADER_LENGTH} bytes, then the tensor's bytes",
                },
            },
        },
        "responses": {
            **_ok(
                "outputs",
                {
                    "type": "object",
                    "required": ["model_name", "model_version", "outputs"],
                    "properties": {"outputs": {"type": "array", "items": _tensor_out(spec)}},
                },
            ),
            **ERRORS,
        },
    }
    metadata = {"responses": {**_ok(f"{name}'s metadata"), **LOOKUP_ERRORS}}
    ready = {
        "responses": {
            **_ok("readiness"),
            **LOOKUP_ERRORS,
            "503": _error(
                "the version is stored but failed to open (body: ready false), or the worker's queue is full"
            ),
        }
    }
    paths: dict[str, Any] = {}
    for suffix, params in (("", []), ("/versions/{version}", [VERSION_PARAM])):
        with_params = {"parameters": params} if params else {}
        paths[f"/v1/models/{name}{suffix}/predict"] = {
            "post": {"summary": f"predict with {name}", **with_params, **predict}
        }
        paths[f"/v2/models/{name}{suffix}"] = {"get": {"summary": f"v2 metadata of {name}", **with_params, **metadata}}
        paths[f"/v2/models/{name}{suffix}/ready"] = {"get": {"summary": f"is {name} ready", **with_params, **ready}}
        paths[f"/v2/models/{name}{suffix}/infer"] = {
            "post": {"summary": f"v2 inference with {name}", **with_params, **infer}
        }
    paths[f"/v1/models/{name}"] = {
        "get": {
            "summary": f"{name}'s tensors, form and served versions",
            "responses": {**_ok("metadata"), **LOOKUP_ERRORS},
        }
    }
    card = {
        "responses": {
            "200": {"description": "the model card as an HTML page", "content": {"text/html": {}}},
            **LOOKUP_ERRORS,
        }
    }
    paths[f"/models/{name}"] = {"get": {"summary": f"the model card of {name}'s latest version", **card}}
    paths[f"/models/{name}/versions/{{version}}"] = {
        "get": {"summary": f"the model card of a version of {name}", "parameters": [VERSION_PARAM], **card}
    }
    paths[f"/models/{name}/versions/{{version}}/{{file}}"] = {
        "get": {
            "summary": "a figure of a version's model card, from its folder only",
            "parameters": [
                VERSION_PARAM,
                {
                    "name": "file",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[^/]+\\.png$"},
                },
            ],
            "responses": {"200": {"description": "the figure", "content": {"image/png": {}}}, **LOOKUP_ERRORS},
        }
    }
    return paths


def describe(names: list[str], max_batch: int = 256) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a server answering for `names` with batches of at most `max_batch`."""

    def status(summary, more=BUSY):
        return {"get": {"summary": summary, "responses": {**_ok("status"), **more}}}

    not_ready = {"503": _error("not ready yet (or the worker's queue is full)")}
    paths: dict[str, Any] = {
        "/v1/models": status("served models with their versions"),
        "/v2": status("server metadata"),
        # Liveness is answered ahead of any queue: an overloaded worker is alive.
        "/v2/health/live": status("liveness", {}),
        "/v2/health/ready": status("readiness: the models loaded and warmed up, at least one served", not_ready),
        "/healthz": status("liveness alias", {}),
        "/readyz": status("readiness alias", not_ready),
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of every worker",
                "responses": {**_ok("metrics", {"type": "string"}, "text/plain"), **BUSY},
            }
        },
    }
    for name in names:
        paths.update(_model_paths(get_model(name), max_batch))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "zoo",
            "version": "1",
            "description": "Digit prediction and value inference for the "
            "zoo's models; /v2 follows the Open Inference Protocol (KServe / Triton HTTP).",
        },
        "paths": paths,
        "components": {
            "schemas": {"Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}}
        },
    }


@openapi.get("/openapi.json")
def openapi_json():
    return jsonify(describe(served_models().names(), current_app.config["MAX_BATCH"]))
