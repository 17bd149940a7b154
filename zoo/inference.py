"""Answers from a Runtime in plain data: digits with their probabilities, regression values."""

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


def regression_inputs(values: Any) -> tuple[np.ndarray, bool]:
    """One x or a list of them (flat or [N, 1]) as an [N, 1] batch, and whether they came as a list."""
    array = numeric_array(values, "x")
    if array.ndim == 0:
        return array.reshape(1, 1), False
    if array.ndim == 1 or (array.ndim == 2 and array.shape[1] == 1):
        return array.reshape(-1, 1), True
    raise InvalidInputError(f"expected x as a number or a list of numbers, got shape {list(array.shape)}")


def predict_values(runtime: Runtime, batch: np.ndarray) -> list[float]:
    """The model's output for an [N, 1] batch, one float per row."""
    return [float(value) for value in runtime.run(batch).reshape(len(batch))]
