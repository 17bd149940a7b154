"""Answers from a Runtime in plain data: digits with their probabilities, output values per item."""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.errors import InvalidInputError
from zoo.imaging import numeric_array
from zoo.runtimes import Runtime


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def classify_digits(runtime: Runtime, batch: np.ndarray) -> list[dict[str, Any]]:
    """One {"digit", "probabilities"} per image of a [N, 1, 28, 28] batch."""
    probabilities = softmax(runtime.run(batch).astype(np.float64))
    return [
        {"digit": int(row.argmax()), "probabilities": [round(float(p), 6) for p in row]}
        for row in probabilities
    ]


def value_inputs(values: Any, features: int) -> tuple[np.ndarray, bool]:
    """Numbers for a model of `features` inputs as an [N, features] batch, and whether they came as a batch.

    One feature: a number, or a list of them (flat or [N, 1]). More: a list of `features` numbers, or a list of such lists.
    """
    array = numeric_array(values, "x")
    if features == 1 and array.ndim == 0:
        return array.reshape(1, 1), False
    if features == 1 and (array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1)):
        return array.reshape(-1, 1), True
    if features > 1 and array.ndim == 1 and len(array) == features:
        return array.reshape(1, features), False
    if array.ndim == 2 and array.shape[1] == features and len(array):
        return array, True
    expected = "a number or a list of numbers" if features == 1 else f"a list of {features} numbers or a list of such lists"
    raise InvalidInputError(f"expected x as {expected}, got shape {list(array.shape)}")


def predict_values(runtime: Runtime, batch: np.ndarray) -> list[Any]:
    """The model's output for each row of a batch: a float where the output has one value, else a list."""
    outputs = runtime.run(batch).reshape(len(batch), -1)
    if outputs.shape[1] == 1:
        return [float(value) for value in outputs[:, 0]]
    return [[float(value) for value in row] for row in outputs]
