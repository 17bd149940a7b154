"""/metrics in the Prometheus text format, correct across worker processes, and one access-log line per request.

Under `zoo serve` every worker writes its samples to $PROMETHEUS_MULTIPROC_DIR and any worker answers
/metrics with all of them (prometheus_client's multiprocess mode); in a single process the default registry
is read directly.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Flask, Response, current_app, g, request

from zoo.serve.context import MODELS_KEY

if TYPE_CHECKING:
    from zoo.exports.runtimes import Runtime
    from zoo.serve.repository import ServedModels

metrics = Blueprint("metrics", __name__)
access_log = logging.getLogger("zoo.access")

# Latency buckets from 0.5 ms to 2.5 s: the zoo's answers take milliseconds; the tail is what matters.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


@dataclass(frozen=True)
class Instruments:
    requests: Any
    latency: Any
    inference: Any
    loaded: Any
    failed: Any
    reloads: Any


@functools.cache
def instruments() -> Instruments:
    """The process's metrics, made on first use: prometheus_client picks multiprocess mode when it is first
    imported, so it must not be imported before `zoo serve` has set $PROMETHEUS_MULTIPROC_DIR for its workers."""
    from prometheus_client import Counter, Gauge, Histogram

    return Instruments(
        requests=Counter("zoo_requests", "HTTP requests answered", ["model", "version", "route", "status"]),
        latency=Histogram("zoo_request_duration_seconds", "Time from request to answer", ["model"], buckets=BUCKETS),
        inference=Histogram(
            "zoo_inference_duration_seconds",
            "Time spent in the model's runtime",
            ["model", "version", "backend"],
            buckets=BUCKETS,
        ),
        loaded=Gauge(
            "zoo_models_loaded",
            "Versions loaded, per model (the most any worker has)",
            ["model"],
            multiprocess_mode="max",
        ),
        failed=Gauge(
            "zoo_models_failed",
            "Stored versions that failed to open and are not served, per model",
            ["model"],
            multiprocess_mode="max",
        ),
        reloads=Counter(
            "zoo_reloads", "Polls of the weights store, by result (changed, unchanged, failed)", ["result"]
        ),
    )


_GAUGED: set[str] = set()  # models this process has reported, so one no longer served reads 0, not its last count
# The model label of a request for a model this server does not serve: labels take only served names, so that
# requests for made-up names cannot grow /metrics (and the workers' files) without bound.
UNSERVED = "unserved"
_SCRAPING = threading.Lock()  # one app's gauges set and read together


def record_loaded(served: ServedModels) -> None:
    """Set the loaded- and failed-versions gauges from what `served` serves and could not open."""
    failed = Counter(name for name, _ in served.failed)
    names = set(served.runtimes) | set(failed)
    for name in _GAUGED - names:
        instruments().loaded.labels(name).set(0)
        instruments().failed.labels(name).set(0)
    for name in names:
        instruments().loaded.labels(name).set(len(served.runtimes.get(name, {})))
        instruments().failed.labels(name).set(failed[name])
    _GAUGED.update(names)


def record_refusal(status: int) -> None:
    """Count a request the front answered itself: 408 (body too slow), 413 (a chunked body over the limit) or
    503 (queue full)."""
    series("requests", "", "", "refused by the front", str(status)).inc()


def record_reload(result: str) -> None:
    """Count one poll of the weights store by its result."""
    instruments().reloads.labels(result).inc()


def record_inference(runtime: Runtime, seconds: float) -> None:
    """Time one inference of `runtime`'s model and version on its backend."""
    series("inference", runtime.name, str(runtime.version), runtime.backend).observe(seconds)


@metrics.get("/metrics")
def prometheus_metrics() -> Response:
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    with _SCRAPING:
        # The gauges belong to the process, not to an app: where several apps share one process (tests, a host
        # mounting two), the one made last would otherwise have set them, so each answer sets them from its own app.
        record_loaded(current_app.extensions["zoo.models"])
        body = generate_latest(registry)
    return Response(body, mimetype=CONTENT_TYPE_LATEST)


def instrument(app: Flask) -> None:
    """Count and time every request by model, version, route and status, and log it when ACCESS_LOG is set."""
    log_format = app.config["ACCESS_LOG"]

    @app.before_request
    def start_clock() -> None:
        g.zoo_started = time.perf_counter()

    @app.after_request
    def count(response: Response) -> Response:
        seconds = time.perf_counter() - g.get("zoo_started", time.perf_counter())
        observe_request(current_app.extensions[MODELS_KEY], (request.view_args or {}).get("name", ""),
                        str(g.get("zoo_version", "")),  # set only once a served version was found
                        request.url_rule.rule if request.url_rule is not None else "unmatched",
                        response.status_code, seconds, log_format, request.remote_addr or "", request.method,
                        request.path, response.content_length)
        return response


@functools.cache
def series(metric: str, *labels: str) -> Any:
    """One labelled series of an instrument (`metric`: an Instruments field), looked up once per process:
    prometheus_client's labels() takes a lock and builds its key on every call, some 4% of a cheap request's time.
    The label values are bounded (served names, statuses, routes), so the cache is too."""
    return getattr(instruments(), metric).labels(*labels)


def observe_request(served: ServedModels, model: str, version: str, route: str, status: int | str, seconds: float,
                    log_format: str | None, remote: str, method: str, path: str, size: int | None) -> None:
    """Count and time one request by model, version, route and status (an HTTP status, or a gRPC code's name), and
    write its access-log line when `log_format` is "text" or "json": for Flask's requests, for those the front
    answers itself and for gRPC's (method "GRPC", the RPC's path as route and path)."""
    if model and model not in served.runtimes:
        model = UNSERVED
    series("requests", model, version, route, str(status)).inc()
    series("latency", model).observe(seconds)
    if log_format == "json":
        access_log.info(json.dumps({"time": time.time(), "remote": remote, "method": method, "path": path,
                                    "status": status, "model": model, "version": version, "bytes": size,
                                    "latency_ms": round(seconds * 1000, 3)}))
    elif log_format:
        access_log.info('%s "%s %s" %s %s %.2fms', escaped(remote), escaped(method), escaped(path), status, size,
                        seconds * 1000)


_UNPRINTABLE = re.compile(r'[\x00-\x1f\x7f-\x9f"\\]')


def escaped(text: str) -> str:
    """`text` with control characters, quotes and backslashes written as escapes, so that a client's `%0A` in a
    path cannot start a forged line of the text access log."""
    return _UNPRINTABLE.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
