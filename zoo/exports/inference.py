"""Answers from a Runtime in plain data: digits with their probabilities, output values per item."""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.exports.runtimes import Runtime


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


def predict_values(runtime: Runtime, batch: np.ndarray) -> list[Any]:
    """The model's output for each row of a batch: a float where the output has one value, else a list."""
    outputs = runtime.run(batch).reshape(len(batch), -1)
    if outputs.shape[1] == 1:
        return [float(value) for value in outputs[:, 0]]
    return [[float(value) for value in row] for row in outputs]
