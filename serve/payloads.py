"""Reading request bodies into model input: JSON, raw or multipart images, and Open Inference Protocol v2 tensors.

FORMS holds, for each InputForm a spec can declare, how /v1 reads a request, how it answers, and how
/openapi.json describes the body; the routes never look at which model they serve.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson
from flask import Request, current_app
from werkzeug.exceptions import UnsupportedMediaType

from zoo.core.errors import InvalidInputError
from zoo.core.spec import InputForm, ModelSpec, TensorSpec
from zoo.exports.inference import classify_digits, predict_values
from zoo.exports.runtimes import Runtime
from zoo.inputs.imaging import image_to_batch, numeric_array, pixels_to_batch
from zoo.inputs.preprocessing import value_inputs

IMAGE_TYPES = ("image/png", "image/jpeg")
V2_HEADER_LENGTH = "Inference-Header-Content-Length"
# model_name and model_version: KServe's own client (InferRequest.to_rest) sends them in every body.
V2_REQUEST_KEYS = {"id", "model_name", "model_version", "parameters", "inputs", "outputs"}
V2_TENSOR_KEYS = {"name", "shape", "datatype", "data", "parameters"}


def json_body(request: Request, body: bytes | None = None) -> Any:
    """The body parsed as JSON; a body that is not JSON, or nested absurdly deep, is a 400."""
    body = request.get_data(cache=False) if body is None else body
    if not body:
        raise InvalidInputError("expected a JSON document, got an empty body")
    try:
        # orjson parses a batch of pixels about 4x faster than json; it refuses NaN and Infinity, which the
        # standard parser reads, so that they are refused below with a message naming them.
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InvalidInputError(f"expected a JSON document, got invalid JSON ({str(error)[:200]})") from None


def json_field(request: Request, key: str, example: str) -> Any:
    """`document[key]` of a JSON object body, or a 400 showing the expected form."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"expected Content-Type application/json, e.g. {example}; got {_got(request)}")
    document = json_body(request)
    if not isinstance(document, dict) or key not in document:
        got = f"an object with keys {sorted(document)}" if isinstance(document, dict) else type(document).__name__
        raise InvalidInputError(f"expected a JSON object like {example}, got {got}")
    check_keys(document, {key}, "the request")
    return document[key]


def check_keys(document: dict[str, Any], allowed: set[str], what: str) -> None:
    """A 400 naming any key of `document` that is not in `allowed` (the API refuses what it does not know)."""
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise InvalidInputError(f"expected {what} to have only {', '.join(map(repr, sorted(allowed)))}, "
                                f"got unknown key(s) {', '.join(map(repr, unknown))}")


def digit_batch(request: Request, spec: ModelSpec) -> tuple[np.ndarray, bool]:
    """A digit request as an [N, 1, 28, 28] batch and whether it came as a batch: PNG/JPEG body or file, or JSON
    pixels."""
    max_pixels = current_app.config["MAX_IMAGE_PIXELS"]
    if request.mimetype in IMAGE_TYPES:
        return image_to_batch(request.get_data(cache=False), max_pixels), False
    if request.mimetype == "multipart/form-data":
        upload = next(iter(request.files.values()), None)
        if upload is None:
            raise InvalidInputError("expected a multipart file field (e.g. curl -F image=@digit.png), got no file")
        return image_to_batch(upload.read(), max_pixels), False
    if request.mimetype == "application/json":
        return checked_batch(
            *pixels_to_batch(json_field(request, "pixels", '{"pixels": [[0, ...28 values], ...28 rows]}'))
        )
    raise UnsupportedMediaType(
        f"expected image/png, image/jpeg, multipart/form-data or application/json, got {_got(request)}"
    )


def value_example(spec: ModelSpec) -> str:
    """A request body for a values model, as the error messages and /openapi.json show it."""
    name, (features,) = spec.input.name, spec.input.features
    if features == 1:
        return f'{{"{name}": 3.5}} or {{"{name}": [1, 2, 3]}}'
    return f'{{"{name}": [{features} numbers]}} or {{"{name}": [[{features} numbers], ...]}}'


def value_batch(request: Request, spec: ModelSpec) -> tuple[np.ndarray, bool]:
    """A values request ({"x": 3}, {"x": [1, 2, 3]}, or rows of features) as a batch and whether it came as one."""
    (features,) = spec.input.features
    return checked_batch(*value_inputs(json_field(request, spec.input.name, value_example(spec)), features))


def digit_answer(runtime: Runtime, batch: np.ndarray, batched: bool) -> dict[str, Any]:
    predictions = classify_digits(runtime, batch)
    return {"predictions": predictions} if batched else predictions[0]


def value_answer(runtime: Runtime, batch: np.ndarray, batched: bool) -> dict[str, Any]:
    values = predict_values(runtime, batch)
    return {runtime.spec.output.name: values if batched else values[0]}


@dataclass(frozen=True)
class RequestForm:
    """How /v1 reads and answers one InputForm, and the JSON body schema /openapi.json gives it."""

    read: Callable[[Request, ModelSpec], tuple[np.ndarray, bool]]
    answer: Callable[[Runtime, np.ndarray, bool], dict[str, Any]]
    json_schema: Callable[[ModelSpec, int], dict[str, Any]]  # (spec, the server's batch limit)
    other_media: dict[str, dict[str, Any]]  # media types besides JSON that `read` takes, with their OpenAPI schemas


# Finite float32 numbers: JSON allows larger ones, which the model could only see as infinity.
NUMBER = {"type": "number", "minimum": -3.4e38, "maximum": 3.4e38}


def _array(items: dict[str, Any], low: int, high: int | None = None) -> dict[str, Any]:
    return {"type": "array", "items": items, "minItems": low, "maxItems": low if high is None else high}


def _pixels_schema(spec: ModelSpec, max_batch: int) -> dict[str, Any]:
    pixel = {"type": "number", "minimum": 0, "maximum": 255}
    image = [_array(_array(pixel, 28), 28), _array(pixel, 784)]
    batch = _array({"anyOf": [*image, _array(_array(_array(pixel, 28), 28), 1)]}, 1, max_batch)
    return {
        "type": "object",
        "required": ["pixels"],
        "additionalProperties": False,
        "description": "one 28x28 or 784-value image, or a batch ([N,28,28], [N,784], [N,1,28,28]); "
        "values 0-255 or 0-1; white on black or black on white",
        "properties": {"pixels": {"anyOf": [*image, batch]}},
    }


def _values_schema(spec: ModelSpec, max_batch: int) -> dict[str, Any]:
    (features,) = spec.input.features
    if features == 1:
        accepted = [NUMBER, _array(NUMBER, 1, max_batch), _array(_array(NUMBER, 1), 1, max_batch)]
    else:
        accepted = [_array(NUMBER, features), _array(_array(NUMBER, features), 1, max_batch)]
    return {
        "type": "object",
        "required": [spec.input.name],
        "additionalProperties": False,
        "description": value_example(spec),
        "properties": {spec.input.name: {"anyOf": accepted}},
    }


_BINARY = {"type": "string", "format": "binary"}
FORMS: dict[InputForm, RequestForm] = {
    InputForm.DIGITS: RequestForm(
        digit_batch,
        digit_answer,
        _pixels_schema,
        {
            **{kind: {"schema": _BINARY} for kind in IMAGE_TYPES},
            "multipart/form-data": {"schema": {"type": "object", "properties": {"image": _BINARY}}},
        },
    ),
    InputForm.VALUES: RequestForm(value_batch, value_answer, _values_schema, {}),
}


def checked_batch(batch: np.ndarray, batched: bool) -> tuple[np.ndarray, bool]:
    """`batch` unchanged when within the server's batch limit; a 400 saying the limit otherwise."""
    limit = current_app.config["MAX_BATCH"]
    if len(batch) > limit:
        raise InvalidInputError(f"expected a batch of at most {limit} items, got {len(batch)}")
    return batch, batched


def _got(request: Request) -> str:
    return request.content_type or "no Content-Type"


MAX_DIMENSIONS = 8
# The v2 protocol's names for the dtypes a TensorSpec declares.
V2_DATATYPES = {"float32": "FP32"}


def v2_datatype(tensor: TensorSpec) -> str:
    """The v2 protocol's datatype of `tensor` (FP32 for float32)."""
    return V2_DATATYPES[tensor.dtype]


# A byte count in a header: ASCII digits, short enough that int() is cheap (str.isdigit takes "²" and "١").
_BYTE_COUNT = re.compile(r"0|[1-9][0-9]{0,17}")


def _field(document: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str, expected: str) -> Any:
    """`document[key]` (None when absent) if it is of `kind`; a 400 naming the field and what came otherwise."""
    value = document.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and bool not in _kinds(kind)):
        raise InvalidInputError(f"expected {what} {key!r} to be {expected}, got {_json_type(value)}")
    return value


def _kinds(kind: type | tuple[type, ...]) -> tuple[type, ...]:
    return kind if isinstance(kind, tuple) else (kind,)


def _json_type(value: Any) -> str:
    names = {
        dict: "an object",
        list: "an array",
        str: "a string",
        bool: "a boolean",
        int: "a number",
        float: "a number",
        type(None): "null",
    }
    return names.get(type(value), type(value).__name__)


def _parameters(document: dict[str, Any], what: str) -> dict[str, Any]:
    return _field(document, "parameters", dict, what, "an object") or {}


def v2_request(request: Request, runtime: Runtime) -> tuple[np.ndarray, dict[str, Any]]:
    """An Open Inference Protocol v2 infer request (JSON, or JSON plus binary tensors) as the model's input batch.

    Every field is checked for its type before it is used, so a type-confused request is a 400, never a 500.
    Returns the batch and the request document (for its id and requested outputs).
    """
    body = request.get_data(cache=False)
    header_length = request.headers.get(V2_HEADER_LENGTH)
    binary = b""
    if header_length is not None:
        if not _BYTE_COUNT.fullmatch(header_length) or int(header_length) > len(body):
            raise InvalidInputError(
                f"{V2_HEADER_LENGTH} must be a byte count within the {len(body)}-byte body, got {header_length[:40]!r}"
            )
        body, binary = body[: int(header_length)], body[int(header_length) :]
    document = json_body(request, body)
    expected = runtime.spec.input
    example = (
        f'{{"inputs": [{{"name": "{expected.name}", "shape": {v2_shape(expected.shape)}, '
        f'"datatype": "{v2_datatype(expected)}", "data": [...]}}]}}'
    )
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInputError(f"expected a v2 infer request with one input, like {example}")
    check_keys(document, V2_REQUEST_KEYS, "a v2 infer request")
    _field(document, "id", str, "the request's", "a string")
    _field(document, "model_version", str, "the request's", "a string")
    if _field(document, "model_name", str, "the request's", "a string") not in (None, runtime.name):
        raise InvalidInputError(
            f"expected 'model_name' {runtime.name!r}, the model of this route, got {_shown(document['model_name'])}"
        )
    _parameters(document, "the request's")
    _field(document, "outputs", list, "the request's", 'an array of {"name": ...} objects')
    tensor = inputs[0]
    check_keys(tensor, V2_TENSOR_KEYS, f"input {expected.name!r}")
    if tensor.get("name") != expected.name:
        raise InvalidInputError(f"expected input named {expected.name!r}, got {_shown(tensor.get('name'))}")
    if tensor.get("datatype") != v2_datatype(expected):
        raise InvalidInputError(
            f"expected input {expected.name!r} with datatype {v2_datatype(expected)}, "
            f"got {_shown(tensor.get('datatype'))}"
        )
    shape = v2_tensor_shape(tensor.get("shape"), expected.name)
    binary_size = _parameters(tensor, f"input {expected.name!r}'s").get("binary_data_size")
    if binary_size is not None:
        if (
            not isinstance(binary_size, int)
            or isinstance(binary_size, bool)
            or binary_size != len(binary)
            or binary_size % 4
        ):
            raise InvalidInputError(
                f"expected {_shown(binary_size)} bytes of FP32 binary data after the JSON header, got {len(binary)}"
            )
        array = np.frombuffer(binary, dtype="<f4").copy()  # torch wants a writable buffer
        if not np.isfinite(array).all():
            raise InvalidInputError(f"expected finite values in input {expected.name!r}, got NaN or infinity")
    elif "data" in tensor:
        array = numeric_array(tensor["data"], f"input {expected.name!r} data").reshape(-1)
    else:
        raise InvalidInputError(f"expected input {expected.name!r} to carry 'data' (or binary_data_size), got neither")
    count = math.prod(shape)  # Python integers: a numpy product of huge dimensions could wrap to 0
    if array.size != count:
        raise InvalidInputError(
            f"expected the values input {expected.name!r} of shape {shape} needs: it needs "
            f"{count} values, got {array.size}"
        )
    batch = array.reshape(shape)
    checked_batch(batch, True)
    return batch, document  # Runtime.run checks its shape and dtype


def v2_tensor_shape(shape: Any, name: str) -> list[int]:
    """A v2 tensor's `shape` checked: a list of at most MAX_DIMENSIONS non-negative integers."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInputError(
            f"expected input {name!r} 'shape' as a list of non-negative integers, got {_shown(shape)}"
        )
    if len(shape) > MAX_DIMENSIONS:
        raise InvalidInputError(
            f"expected input {name!r} 'shape' of at most {MAX_DIMENSIONS} dimensions, got {len(shape)}"
        )
    return shape


def _shown(value: Any) -> str:
    """A client's value for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def v2_shape(shape: tuple[Any, ...]) -> list[int]:
    """A TensorSpec shape in v2 form: the batch dimension "N" becomes -1."""
    return [-1 if dim == "N" else int(dim) for dim in shape]


def v2_output_binary(document: dict[str, Any], output_name: str) -> bool:
    """Whether the request asked for `output_name` as binary data; a request for an unknown output is a 400."""
    requested = document.get("outputs")
    default = _field(
        _parameters(document, "the request's"), "binary_data_output", bool, "the request's parameter", "true or false"
    )
    if not requested:
        return bool(default)
    if any(not isinstance(o, dict) or o.get("name") != output_name for o in requested):
        raise InvalidInputError(f"expected 'outputs' to request only {output_name!r}, got {_shown(requested)}")
    for output in requested:
        check_keys(output, {"name", "parameters"}, f"output {output_name!r}")
    chosen = _field(
        _parameters(requested[0], f"output {output_name!r}'s"),
        "binary_data",
        bool,
        f"output {output_name!r}'s parameter",
        "true or false",
    )
    return bool(default) if chosen is None else chosen
