"""The model registry: a private dict filled by a decorator, read by `get_model` and `list_models`."""

from __future__ import annotations

from typing import Callable, TypeVar

from zoo.errors import UnknownModelError
from zoo.spec import ModelSpec

_MODELS: dict[str, ModelSpec] = {}

S = TypeVar("S", bound=Callable[[], ModelSpec])


def register_model(factory: S) -> S:
    """Register the spec that `factory()` returns; a name registered twice is a bug and raises."""
    spec = factory()
    if spec.name in _MODELS:
        raise ValueError(f"a model is already registered under the name {spec.name!r}")
    _MODELS[spec.name] = spec
    return factory


def get_model(name: str) -> ModelSpec:
    """The spec registered under `name`; an unknown name raises with the known ones listed."""
    try:
        return _MODELS[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; expected one of: {', '.join(list_models())}"
        ) from None


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODELS)
