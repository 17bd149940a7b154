"""/openapi.json: an exact OpenAPI 3.1 description of what this server answers.

Each served model has its own paths with its own request schemas (its form's JSON body, its v2 tensor); unknown
properties are refused and declared so (`additionalProperties: false`); versions are integers >= 1; every status
the server can send is listed. `tests/test_openapi_fuzz.py` draws requests from this document and checks that
the server accepts every one the schemas call valid. Only data here: the app serves it at /openapi.json.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from zoo.core.registry import get_model
from zoo.core.spec import InputForm, ModelSpec
from zoo.serve.checks import DEFAULT_MAX_BATCH, interface
from zoo.serve.forms import FORMS, IMAGE_TYPES, value_example
from zoo.serve.v2_codec import V2_HEADER_LENGTH, v2_datatype

# Numbers that are finite as float32: JSON allows larger ones, which the model could only see as infinity. The bound
# is the largest double that rounds to a finite float32 (just under 2**128 - 2**103), so that the schema and the
# server's own finiteness check draw the same line: a number above it is refused, one at or below it is answered.
FLOAT32_BOUND = 3.4028235677973362e38
NUMBER = {"type": "number", "minimum": -FLOAT32_BOUND, "maximum": FLOAT32_BOUND}


def _array(items: dict[str, Any], low: int, high: int | None = None) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": low, "maxItems": low if high is None else high}


def pixels_schema(spec: ModelSpec, max_batch: int) -> dict[str, Any]:
    """The JSON body of a digits model's /v1 predict: one image or a batch of pixels."""
    pixel = {"type": "number", "minimum": 0, "maximum": 255}
    image = [_array(_array(pixel, 28), 28), _array(pixel, 784)]
    # A batch is of one image form throughout: numpy reads mixed forms as ragged.
    batch = [_array(form, 1, max_batch) for form in (*image, _array(_array(_array(pixel, 28), 28), 1))]
    return {
        "type": "object",
        "required": ["pixels"],
        "additionalProperties": False,
        "description": "one 28x28 or 784-value image, or a batch ([N,28,28], [N,784], [N,1,28,28]); "
        "values 0-255 or 0-1; white on black or black on white",
        "properties": {"pixels": {"anyOf": [*image, *batch]}},
    }


def values_schema(spec: ModelSpec, max_batch: int) -> dict[str, Any]:
    """The JSON body of a values model's /v1 predict: one row of features or a batch of rows."""
    (features,) = interface(spec).input.features
    if features == 1:
        accepted = [NUMBER, _array(NUMBER, 1, max_batch), _array(_array(NUMBER, 1), 1, max_batch)]
    else:
        accepted = [_array(NUMBER, features), _array(_array(NUMBER, features), 1, max_batch)]
    return {
        "type": "object",
        "required": [interface(spec).input.name],
        "additionalProperties": False,
        "description": value_example(spec),
        "properties": {interface(spec).input.name: {"anyOf": accepted}},
    }


BINARY = {"type": "string", "format": "binary"}
# The schema of each medium a form reads besides JSON (serve/forms.py lists which a form takes).
MEDIA_SCHEMAS: dict[str, dict[str, Any]] = {
    **{kind: {"schema": BINARY} for kind in IMAGE_TYPES},
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {"image": BINARY}}},
}
JSON_SCHEMAS: dict[InputForm, Callable[[ModelSpec, int], dict[str, Any]]] = {
    InputForm.DIGITS: pixels_schema,
    InputForm.VALUES: values_schema,
}


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
# Triton's statistics extension (serve/statistics.py).
STATISTICS = {"type": "object", "required": ["model_stats"], "properties": {"model_stats": {"type": "array"}}}
VERSION_PARAM = {"name": "version", "in": "path", "required": True,
                 "schema": {"type": "integer", "minimum": 1}, "description": "a version number, without leading zeros"}


def _ok(description: str, schema: dict[str, Any] = OBJECT, media: str = "application/json") -> dict[str, Any]:
    return {"200": {"description": description, "content": {media: {"schema": schema}}}}


def _body(schema: dict[str, Any], other_media: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": schema}, **(other_media or {})}}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` or null: the server reads an optional field sent as null as absent."""
    return {"anyOf": [schema, {"type": "null"}]}


def _nested(dims: list[int]) -> dict[str, Any]:
    """Arrays nested as `dims`, of numbers."""
    return NUMBER if not dims else _array(_nested(dims[1:]), dims[0])


def v2_tensor_schema(spec: ModelSpec, batch: int) -> dict[str, Any]:
    """The v2 input tensor of `spec` for a batch of `batch`: its shape, and exactly the values that shape needs, flat
    or nested as the shape."""
    tensor = interface(spec).input
    shape = [batch, *tensor.features]
    return {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "additionalProperties": False,
        "properties": {
            "name": {"const": tensor.name},
            "datatype": {"const": v2_datatype(tensor)},
            "shape": {"const": shape},
            "data": {"anyOf": [_array(NUMBER, math.prod(shape)), _nested(shape)]},
            # binary_data_size announces binary data after the JSON, which a JSON body has none of (the binary
            # extension's requests are described in the operation's description).
            "parameters": _nullable({"type": "object", "properties": {"binary_data_size": False}}),
        },
    }


def v2_request_schema(spec: ModelSpec, max_batch: int) -> dict[str, Any]:
    """The v2 infer request for `spec`: exactly one input, its name, datatype, a shape with a batch of 1..max_batch
    and as many values as that shape needs (one schema per batch size, as JSON Schema cannot tie a count to
    another field)."""
    output = {
        "type": "object",
        "required": ["name"],
        "additionalProperties": False,
        "properties": {
            "name": {"const": interface(spec).output.name},
            "parameters": _nullable({"type": "object", "properties": {"binary_data": _nullable({"type": "boolean"})}}),
        },
    }
    tensors = [v2_tensor_schema(spec, batch) for batch in range(1, max_batch + 1)]
    return {
        "type": "object",
        "required": ["inputs"],
        "additionalProperties": False,
        "properties": {
            "id": _nullable({"type": "string"}),
            "model_name": {"enum": [spec.name, None], "description": "as KServe's client sends it: the route's model"},
            "model_version": _nullable({"type": "string"}),
            "inputs": {"type": "array", "items": {"anyOf": tensors}, "minItems": 1, "maxItems": 1},
            "outputs": _nullable({"type": "array", "items": output}),
            "parameters": _nullable(
                {"type": "object", "properties": {"binary_data_output": _nullable({"type": "boolean"})}}
            ),
        },
    }


def _tensor_out(spec: ModelSpec) -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["name", "shape", "datatype"],
        "properties": {
            "name": {"const": interface(spec).output.name},
            "datatype": {"const": v2_datatype(interface(spec).output)},
            "shape": {"type": "array", "items": {"type": "integer"}},
            # null where the model's output overflowed to infinity or NaN (JSON has neither), as it can for inputs
            # near the float32 bound.
            "data": {"type": "array", "items": {"anyOf": [NUMBER, {"type": "null"}]}},
            "parameters": OBJECT,
        },
    }


def _model_paths(spec: ModelSpec, max_batch: int) -> dict[str, Any]:
    """Every route of one model, latest and pinned."""
    name, form = spec.name, interface(spec).form
    other_media = {kind: MEDIA_SCHEMAS[kind] for kind in FORMS[form].media if kind != "application/json"}
    predict = {
        "requestBody": _body(JSON_SCHEMAS[form](spec, max_batch), other_media),
        "responses": {
            **_ok(f"{name}'s prediction", {"type": "object", "required": ["model", "version", "backend"]}),
            **ERRORS,
        },
    }
    infer = {
        # OpenAPI cannot tie a header to one media type: a binary body is only valid with the header giving its
        # JSON's length, so it is described here rather than declared as a body any bytes would fit.
        "description": f"Triton's binary tensor extension is accepted too: a body of the JSON request (its input "
        f"with parameters.binary_data_size instead of data), then the tensor's little-endian bytes, with the "
        f"{V2_HEADER_LENGTH} header giving the JSON's length in bytes.",
        "requestBody": _body(v2_request_schema(spec, max_batch)),
        "responses": {
            "200": {
                "description": "outputs: JSON, or with binary_data_output the binary tensor extension's JSON and bytes",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["model_name", "model_version", "outputs"],
                            "properties": {"outputs": {"type": "array", "items": _tensor_out(spec)}},
                        }
                    },
                    "application/octet-stream": {"schema": BINARY},
                },
                "headers": {V2_HEADER_LENGTH: {"schema": {"type": "integer", "minimum": 0},
                                               "description": "with a binary answer: its JSON's length in bytes"}},
            },
            **ERRORS,
        },
    }
    metadata = {"responses": {**_ok(f"{name}'s metadata"), **LOOKUP_ERRORS}}
    statistics = {"responses": {**_ok("model_stats: counts and durations per version", STATISTICS),
                                **LOOKUP_ERRORS}}
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
        paths[f"/v2/models/{name}{suffix}/stats"] = {
            "get": {"summary": f"Triton's statistics of {name}", **with_params, **statistics}
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


def describe(names: list[str], max_batch: int = DEFAULT_MAX_BATCH) -> dict[str, Any]:
    """The OpenAPI 3.1 document for a server answering for `names` with batches of at most `max_batch`."""

    def status(summary: str, more: dict[str, Any] = BUSY) -> dict[str, Any]:
        return {"get": {"summary": summary, "responses": {**_ok("status"), **more}}}

    not_ready = {"503": _error("not ready yet (or the worker's queue is full)")}
    paths: dict[str, Any] = {
        "/v1/models": status("served models with their versions"),
        "/v2": status("server metadata"),
        "/v2/models/stats": {"get": {"summary": "Triton's statistics of every served version",
                                     "responses": {**_ok("model_stats", STATISTICS), **BUSY}}},
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

