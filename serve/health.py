"""Plain liveness and readiness aliases for load balancers and orchestrators."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify

from zoo.serve.v2 import readiness

health = Blueprint("health", __name__)


@health.get("/healthz")
def healthz() -> Response:
    return jsonify(live=True)


health.add_url_rule("/readyz", "readyz", readiness)
