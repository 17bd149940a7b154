"""From what a person has (a picture, numbers) to the batch a model takes, by the form its spec declares.

The server reads requests through these same functions, so Python callers and HTTP clients get the same input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from zoo.core.errors import InvalidInputError
from zoo.core.spec import InputForm, ModelSpec
from zoo.inputs.imaging import numeric_array, picture_to_batch


def value_inputs(values: Any, features: int) -> tuple[np.ndarray, bool]:
    """Numbers for a model of `features` inputs as an [N, features] batch, and whether they came as a batch.

    One feature: a number, or a list of them (flat or [N, 1]). More: a list of `features` numbers, or a list of
    such lists.
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
    expected = (
        "a number or a list of numbers" if features == 1 else f"a list of {features} numbers or a list of such lists"
    )
    raise InvalidInputError(f"expected x as {expected}, got shape {list(array.shape)}")


def _values(item: Any, spec: ModelSpec) -> np.ndarray:
    (features,) = spec.input.features
    return value_inputs(item, features)[0]


PREPROCESS: dict[InputForm, Callable[[Any, ModelSpec], np.ndarray]] = {
    InputForm.DIGITS: lambda item, spec: picture_to_batch(item),
    InputForm.VALUES: _values,
}


def preprocess(spec: ModelSpec, item: Any) -> np.ndarray:
    """`item` as a float32 batch for the model of `spec`: a digit picture or pixels, or numbers, by its form."""
    return PREPROCESS[spec.interface.form](item, spec)
