"""The /v1 request forms: how a request body becomes model input (JSON, raw or multipart images) and how the
answer reads, for each InputForm a spec can declare; the routes never look at which model they serve.

Readers take the request and the server's RequestLimits; none reads an app's settings. The OpenAPI schemas of
these bodies live in serve/openapi.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.wrappers import Request

from zoo.core.errors import InvalidInputError
from zoo.core.spec import InputForm, ModelSpec
from zoo.exports.inference import classify_digits, predict_values
from zoo.exports.runtimes import Runtime
from zoo.inputs.imaging import image_to_batch, pixels_to_batch
from zoo.inputs.preprocessing import value_inputs
from zoo.serve.checks import RequestLimits, check_batch, check_keys, interface, parse_json

IMAGE_TYPES = ("image/png", "image/jpeg")


def json_field(request: Request, key: str, example: str) -> Any:
    """`document[key]` of a JSON object body, or a 400 showing the expected form."""
    if request.mimetype != "application/json":
        raise UnsupportedMediaType(f"expected Content-Type application/json, e.g. {example}; got {_got(request)}")
    document = parse_json(request.get_data(cache=False))
    if not isinstance(document, dict) or key not in document:
        got = f"an object with keys {sorted(document)}" if isinstance(document, dict) else type(document).__name__
        raise InvalidInputError(f"expected a JSON object like {example}, got {got}")
    check_keys(document, {key}, "the request")
    return document[key]


def digit_batch(request: Request, spec: ModelSpec, limits: RequestLimits) -> tuple[np.ndarray, bool]:
    """A digit request as an [N, 1, 28, 28] batch and whether it came as a batch: PNG/JPEG body or file, or JSON
    pixels."""
    if request.mimetype in IMAGE_TYPES:
        return image_to_batch(request.get_data(cache=False), limits.max_image_pixels), False
    if request.mimetype == "multipart/form-data":
        upload = next(iter(request.files.values()), None)
        if upload is None:
            raise InvalidInputError("expected a multipart file field (e.g. curl -F image=@digit.png), got no file")
        return image_to_batch(upload.read(), limits.max_image_pixels), False
    if request.mimetype == "application/json":
        pixels = json_field(request, "pixels", '{"pixels": [[0, ...28 values], ...28 rows]}')
        return check_batch(*pixels_to_batch(pixels), limits)
    raise UnsupportedMediaType(
        f"expected image/png, image/jpeg, multipart/form-data or application/json, got {_got(request)}"
    )


def value_example(spec: ModelSpec) -> str:
    """A request body for a values model, as the error messages and /openapi.json show it."""
    tensor = interface(spec).input
    name, (features,) = tensor.name, tensor.features
    if features == 1:
        return f'{{"{name}": 3.5}} or {{"{name}": [1, 2, 3]}}'
    return f'{{"{name}": [{features} numbers]}} or {{"{name}": [[{features} numbers], ...]}}'


def value_batch(request: Request, spec: ModelSpec, limits: RequestLimits) -> tuple[np.ndarray, bool]:
    """A values request ({"x": 3}, {"x": [1, 2, 3]}, or rows of features) as a batch and whether it came as one."""
    tensor = interface(spec).input
    (features,) = tensor.features
    return check_batch(*value_inputs(json_field(request, tensor.name, value_example(spec)), features), limits)


def digit_answer(runtime: Runtime, batch: np.ndarray, batched: bool) -> dict[str, Any]:
    """The digit predictions for `batch`: one prediction, or {"predictions": [...]} for a batch."""
    predictions = classify_digits(runtime, batch)
    return {"predictions": predictions} if batched else predictions[0]


def value_answer(runtime: Runtime, batch: np.ndarray, batched: bool) -> dict[str, Any]:
    """The predicted values for `batch`, under the output's name: one value, or a list for a batch."""
    values = predict_values(runtime, batch)
    return {interface(runtime.spec).output.name: values if batched else values[0]}


@dataclass(frozen=True)
class RequestForm:
    """How /v1 reads and answers one InputForm."""

    read: Callable[[Request, ModelSpec, RequestLimits], tuple[np.ndarray, bool]]
    answer: Callable[[Runtime, np.ndarray, bool], dict[str, Any]]
    media: tuple[str, ...]  # the media types `read` takes, JSON first


FORMS: dict[InputForm, RequestForm] = {
    InputForm.DIGITS: RequestForm(digit_batch, digit_answer, ("application/json", *IMAGE_TYPES, "multipart/form-data")),
    InputForm.VALUES: RequestForm(value_batch, value_answer, ("application/json",)),
}


def _got(request: Request) -> str:
    return request.content_type or "no Content-Type"
