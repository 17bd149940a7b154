"""The zoo's HTTP server: a Flask app factory that any WSGI server can host (`zoo serve` runs gunicorn)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask, send_from_directory

from zoo.serve.cards import cards
from zoo.serve.errors import register_error_handlers
from zoo.serve.health import health
from zoo.serve.models import ServedModels, plan_versions
from zoo.serve.openapi import openapi
from zoo.serve.v1 import v1
from zoo.serve.v2 import v2
from zoo.imaging import DEFAULT_MAX_PIXELS

DEFAULTS: dict[str, Any] = {
    "WEIGHTS_DIR": None,  # None: $ZOO_WEIGHTS_DIR, else the project's weights/
    "BACKEND": "torch",
    "MODELS": None,  # None: every registered model that has a version to serve
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,
    "MAX_BATCH": 256,
    "MAX_IMAGE_PIXELS": DEFAULT_MAX_PIXELS,
    "RUNTIME_THREADS": None,  # ONNX Runtime intra-op threads; None: its own choice by batch size
}


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """A Flask app serving every stored version of the configured models, loaded and warmed up before it returns.

    `config` overrides DEFAULTS; so do ZOO_SERVE_* environment variables (e.g. ZOO_SERVE_BACKEND=onnx).
    """
    app = Flask(__name__)
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env("ZOO_SERVE")
    app.config.update(config or {})
    app.json.sort_keys = False
    weights_dir, backend = app.config["WEIGHTS_DIR"], app.config["BACKEND"]
    plan = plan_versions(app.config["MODELS"], weights_dir, backend)
    app.extensions["zoo.models"] = ServedModels.open(plan, backend, weights_dir, app.config["RUNTIME_THREADS"])
    for blueprint in (v1, v2, health, openapi, cards):
        app.register_blueprint(blueprint)
    app.add_url_rule("/", "page", lambda: send_from_directory(app.static_folder, "index.html"))
    register_error_handlers(app)
    return app
