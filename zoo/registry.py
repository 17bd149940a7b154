"""The model registry: a private dict filled by a decorator, read by `get_model` and `list_models`."""

from __future__ import annotations

import logging
from typing import Any, Callable, TypeVar

from zoo.errors import UnknownModelError
from zoo.spec import ModelSpec

_MODELS: dict[str, ModelSpec] = {}
# Plugins that failed to import: what they are -> their error in one line.
_FAILED_PLUGINS: dict[str, str] = {}

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
        failed = "".join(f"; plugin {plugin} failed to import ({error}), so its models are missing"
                         for plugin, error in _FAILED_PLUGINS.items())
        raise UnknownModelError(
            f"unknown model {name!r}; expected one of: {', '.join(list_models())}{failed}"
        ) from None


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_MODELS)


def load_plugin(plugin: str, load: Callable[[], Any]) -> None:
    """Run `load` (import a plugin's module); if it fails, drop the models it registered, log its error in one line
    and remember it for `failed_plugins` and the unknown-model error, instead of raising."""
    before = set(_MODELS)
    try:
        load()
    except Exception as error:  # noqa: BLE001 (a broken plugin, whatever it raises, must not stop the zoo)
        for name in set(_MODELS) - before:
            del _MODELS[name]
        _FAILED_PLUGINS[plugin] = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0]}"
        logging.getLogger("zoo").warning("warning: plugin %s failed to import and is left out: %s",
                                         plugin, _FAILED_PLUGINS[plugin])


def failed_plugins() -> dict[str, str]:
    """The plugins that failed to import (each named with where it was declared) and their errors, one line each."""
    return dict(_FAILED_PLUGINS)
