"""The zoo's HTTP server: a Flask app factory that any WSGI server can host (`zoo serve` runs granian)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify, request, send_from_directory
from werkzeug.exceptions import UnsupportedMediaType

from zoo.inputs.imaging import DEFAULT_MAX_PIXELS
from zoo.serve.cards import cards
from zoo.serve.checks import DEFAULT_MAX_BATCH, RequestLimits
from zoo.serve.context import LIMITS_KEY, MODELS_KEY, STORE_KEY, served_models
from zoo.serve.errors import register_error_handlers
from zoo.serve.health import health
from zoo.serve.json_provider import OrjsonProvider
from zoo.serve.metrics import instrument, metrics, record_loaded, record_reload
from zoo.serve.openapi import describe
from zoo.serve.repository import AUTO, ServedModels, VersionPolicy
from zoo.serve.statistics import statistics
from zoo.serve.v1 import v1
from zoo.serve.v2 import v2
from zoo.store.versions import WeightsStore

DEFAULTS: dict[str, Any] = {
    "WEIGHTS_DIR": None,  # None: $ZOO_WEIGHTS_DIR, else your user folder beside the released versions
    "BACKEND": AUTO,  # auto: ONNX Runtime for each version with an ONNX export, else torch; or one backend for all
    "MODELS": None,  # None: every registered model that has a version to serve
    "VERSIONS": "all",  # version policy: all, latest:N, or numbers like 1,3
    "POLL_SECONDS": 10,  # look for new and removed versions this often; 0 never
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,
    "MAX_BATCH": DEFAULT_MAX_BATCH,
    "MAX_IMAGE_PIXELS": DEFAULT_MAX_PIXELS,
    "RUNTIME_THREADS": None,  # ONNX Runtime intra-op threads; None: its own choice by batch size
    "TORCH_THREADS": None,  # torch.set_num_threads in this process; None leaves it
    "ACCESS_LOG": None,  # None: no access log; "text" or "json": one line per request on the zoo.access logger
    "THREADS": 1,  # request threads per process, under zoo serve's ASGI front (serve/front.py)
    "BODY_TIMEOUT": 30,  # seconds for a request's whole body to arrive, else 408 (serve/front.py); 0 never
    "MAX_QUEUE": 64,  # complete requests waiting in a worker before new ones get 503 (serve/front.py); 0 no bound
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """A Flask app serving the stored versions of the configured models, loaded and warmed up before it returns.

    `config` overrides DEFAULTS; so do ZOO_SERVE_* environment variables (e.g. ZOO_SERVE_BACKEND=onnx).
    """
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("ZOO_SERVE")
    app.config.update(config or {})
    app.json = OrjsonProvider(app)
    if app.config["TORCH_THREADS"]:
        import torch

        torch.set_num_threads(app.config["TORCH_THREADS"])
    # One store per app: the served models and the card pages read the same one.
    store = app.extensions[STORE_KEY] = WeightsStore.at(app.config["WEIGHTS_DIR"])
    served = ServedModels(app.config["MODELS"], store, app.config["BACKEND"],
                          VersionPolicy.parse(str(app.config["VERSIONS"])), app.config["RUNTIME_THREADS"]).open()
    record_loaded(served)
    if app.config["POLL_SECONDS"]:
        def reloaded(result: str) -> None:
            record_reload(result)
            record_loaded(served)

        served.poll(float(app.config["POLL_SECONDS"]), reloaded)
    app.extensions[MODELS_KEY] = served
    app.extensions[LIMITS_KEY] = RequestLimits(int(app.config["MAX_BATCH"]), int(app.config["MAX_IMAGE_PIXELS"]))
    for blueprint in (v1, v2, statistics, health, openapi, metrics, cards):
        app.register_blueprint(blueprint)
    app.add_url_rule("/", "page", lambda: send_from_directory(str(app.static_folder), "index.html"))
    app.before_request(refuse_encoded_bodies)
    app.after_request(protect_pages)
    instrument(app)
    register_error_handlers(app)
    return app


openapi = Blueprint("openapi", __name__)


@openapi.get("/openapi.json")
def openapi_json() -> Response:
    """/openapi.json: the OpenAPI document of what this app serves, at its batch limit."""
    return jsonify(describe(served_models().names(), current_app.config["MAX_BATCH"]))


def refuse_encoded_bodies() -> None:
    """A compressed body (Content-Encoding: gzip, ...) is refused with 415 rather than read as if it were plain."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(
            f"expected an uncompressed body (no Content-Encoding), got Content-Encoding {encoding}"
        )


# Pages run only the zoo's own script and style, from this server: a card's markdown can carry no script, and a
# page cannot be framed or post elsewhere.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)


def protect_pages(response: Response) -> Response:
    """No answer is sniffed as another type; every HTML page carries the Content-Security-Policy."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    if response.mimetype == "text/html":
        response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return response
