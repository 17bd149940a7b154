"""What every request reader checks, v1 forms and v2 codec alike: JSON parsing, known keys, field types and the
server's limits, which are passed in (`RequestLimits`), never read from an app."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from zoo.core.errors import InvalidInputError, NotExportableError
from zoo.core.spec import Interface, ModelSpec
from zoo.inputs.imaging import DEFAULT_MAX_PIXELS

DEFAULT_MAX_BATCH = 256


@dataclass(frozen=True)
class RequestLimits:
    """The limits a server puts on one request's content (the body's byte limit is the transport's own)."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_image_pixels: int = DEFAULT_MAX_PIXELS


def interface(spec: ModelSpec) -> Interface:
    """The tensors and form of a model that runs on inputs, as every served model does."""
    if spec.interface is None:
        raise NotExportableError(f"{spec.name} cannot be served: it has no forward pass over inputs")
    return spec.interface


def parse_json(body: bytes) -> Any:
    """`body` parsed as JSON; a body that is not JSON, or nested absurdly deep, is an InvalidInputError."""
    if not body:
        raise InvalidInputError("expected a JSON document, got an empty body")
    try:
        # orjson parses a batch of pixels about 4x faster than json; it refuses NaN and Infinity, which the
        # standard parser reads, so that they are refused later with a message naming them.
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as error:
        raise InvalidInputError(f"expected a JSON document, got invalid JSON ({str(error)[:200]})") from None


def check_keys(document: dict[str, Any], allowed: set[str], what: str) -> None:
    """An InvalidInputError naming any key of `document` not in `allowed` (the API refuses what it does not know)."""
    unknown = sorted(set(document) - allowed)
    if unknown:
        raise InvalidInputError(f"expected {what} to have only {', '.join(map(repr, sorted(allowed)))}, "
                                f"got unknown key(s) {', '.join(map(repr, unknown))}")


def check_batch(batch: np.ndarray, batched: bool, limits: RequestLimits) -> tuple[np.ndarray, bool]:
    """`batch` unchanged when within `limits.max_batch`; an InvalidInputError saying the limit otherwise."""
    if len(batch) > limits.max_batch:
        raise InvalidInputError(f"expected a batch of at most {limits.max_batch} items, got {len(batch)}")
    return batch, batched


def field(document: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str, expected: str) -> Any:
    """`document[key]` (None when absent) if it is of `kind`; an InvalidInputError naming the field and what came
    otherwise (a boolean is not a number here, as JSON has it)."""
    value = document.get(key)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if value is not None and (not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds):
        raise InvalidInputError(f"expected {what} {key!r} to be {expected}, got {json_type(value)}")
    return value


_JSON_TYPES = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
               float: "a number", type(None): "null"}


def json_type(value: Any) -> str:
    """The JSON type of a parsed value, as a message names it ("an object", "a number", ...)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


def shown(value: Any) -> str:
    """A client's value for a message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
