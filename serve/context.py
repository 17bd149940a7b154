"""The Flask accessors: the served-model repository and request limits of the app handling the current request.

The only place in serve/ where a request's code reaches the app's state; the readers and the codec are handed what
they need from here.
"""

from __future__ import annotations

from flask import current_app, g

from zoo.exports.runtimes import Runtime
from zoo.serve.checks import RequestLimits
from zoo.serve.repository import ServedModels
from zoo.store.versions import WeightsStore

MODELS_KEY, LIMITS_KEY, STORE_KEY = "zoo.models", "zoo.limits", "zoo.store"


def served_models() -> ServedModels:
    """The ServedModels of the app handling the current request."""
    served: ServedModels = current_app.extensions[MODELS_KEY]
    return served


def weights_store() -> WeightsStore:
    """The WeightsStore the app handling the current request serves from."""
    store: WeightsStore = current_app.extensions[STORE_KEY]
    return store


def request_limits() -> RequestLimits:
    """The request limits of the app handling the current request (its MAX_BATCH and MAX_IMAGE_PIXELS)."""
    limits: RequestLimits = current_app.extensions[LIMITS_KEY]
    return limits


def served_runtime(name: str, version: str | None = None) -> Runtime:
    """The runtime a request is for, noted on the request so its metrics and access log name the version."""
    runtime = served_models().get(name, version)
    g.zoo_version = runtime.version
    return runtime
