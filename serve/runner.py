"""`zoo serve`'s process runner: the app under granian (a Rust HTTP server), each worker loading its own models.

granian was chosen on measurements (benchmarks/README.md): against gunicorn's threaded workers it keeps the
tail within a few times the median under load. The app runs behind serve/front.py's buffering front, so a
client that trickles its body costs no request thread.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import socket
import tempfile
from typing import Any

from zoo.core.errors import InvalidSettingError
from zoo.serve.repository import VersionPolicy, plan_versions
from zoo.store.versions import WeightsLocation, WeightsStore


def check_address(host: str, port: int, option: str = "--port") -> None:
    """Raise InvalidSettingError unless a server could listen on host:port now (`option` names the setting)."""
    if not 1 <= port <= 65535:
        raise InvalidSettingError(f"{option} must be a TCP port from 1 to 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InvalidSettingError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                                      f"is another server using it? choose another with {option}") from None


def check_weights_root(store: WeightsStore) -> None:
    """Raise InvalidSettingError for a named weights root that is missing or unreadable (the default may be absent)."""
    if store.released is not None:
        return
    if not store.root.is_dir():
        raise InvalidSettingError(f"weights root {store.root} does not exist or is not a folder; "
                                  "pass --weights-dir (or $ZOO_WEIGHTS_DIR) naming the folder your versions are in")
    if not os.access(store.root, os.R_OK | os.X_OK):
        raise InvalidSettingError(f"weights root {store.root} is not readable by this user")


# The kernel's accept queue for the listening socket (capped by net.core.somaxconn), and the seconds a client has to
# send its request line and headers (granian closes the connection after).
BACKLOG = 4096
HEADER_TIMEOUT = 10


def raise_open_files_limit(wanted: int) -> None:
    """Raise this process's open-files limit towards `wanted` (at most the hard limit): every connection held, slow
    ones included, is a file descriptor, and a soft limit of 1,024 would refuse connections long before the
    in-flight limit."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def logging_config() -> dict[str, Any]:
    """granian's own logging, plus the zoo's loggers on stderr: zoo.serve's messages and zoo.access's lines."""
    from granian.log import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["handlers"]["zoo"] = {"formatter": "generic", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    config["handlers"]["zoo.access"] = {"formatter": "access", "class": "logging.StreamHandler", "stream": "ext://sys.stderr"}
    config["loggers"]["zoo"] = {"handlers": ["zoo"], "level": "INFO", "propagate": False}
    config["loggers"]["zoo.access"] = {"handlers": ["zoo.access"], "level": "INFO", "propagate": False}
    return config


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 2,
    threads: int = 1,
    backend: str = "auto",
    weights_dir: WeightsLocation = None,
    max_body_bytes: int = 8 * 1024 * 1024,
    max_batch: int = 256,
    models: tuple[str, ...] | None = None,
    versions: str = "all",
    poll_seconds: float = 10,
    access_log: str | None = None,
    body_timeout: float = 30,
    max_queue: int = 64,
    max_in_flight: int = 2048,
    grpc_port: int = 8001,
) -> None:
    """Serve until stopped. The address, the weights root and what to serve are checked first, so each fails
    here with a one-line ZooError rather than in the workers.

    Limits on clients: `body_timeout` seconds for a body to arrive (408 after); `max_queue` complete requests
    waiting per worker (503 after; 0 none); `max_in_flight` requests per worker that granian reads at once, slow
    ones included (beyond it, connections wait in the kernel's backlog); headers must arrive within
    HEADER_TIMEOUT seconds.

    `grpc_port` (0: none) serves the v2 protocol over gRPC too, from every worker (serve/grpc_front.py).
    """
    from granian.constants import Interfaces
    from granian.http import HTTP1Settings
    from granian.log import LogLevels
    from granian.server import Server

    check_address(host, port)
    if grpc_port:
        if grpc_port == port:
            raise InvalidSettingError(f"--grpc-port must differ from --port, got {port} for both")
        check_address(host, grpc_port, "--grpc-port")
    store = WeightsStore.at(weights_dir)
    check_weights_root(store)
    plan_versions(models, store, backend, VersionPolicy.parse(versions))
    # Requests already run side by side on workers and threads; intra-op threads would only fight them.
    root = None if store.named_root is None else str(store.named_root)  # each worker makes the same store of it
    config = {"WEIGHTS_DIR": root, "BACKEND": backend, "MODELS": list(models) if models else None,
              "VERSIONS": versions, "POLL_SECONDS": poll_seconds, "MAX_CONTENT_LENGTH": max_body_bytes,
              "MAX_BATCH": max_batch, "RUNTIME_THREADS": 1, "TORCH_THREADS": 1, "ACCESS_LOG": access_log,
              "THREADS": threads, "BODY_TIMEOUT": body_timeout, "MAX_QUEUE": max_queue,
              "GRPC_PORT": grpc_port, "GRPC_HOST": host}
    # granian's workers call the factory with no arguments; the app reads its settings from ZOO_SERVE_*.
    os.environ.update({f"ZOO_SERVE_{key}": json.dumps(value) for key, value in config.items()})
    metrics_dir = tempfile.mkdtemp(prefix="zoo-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    raise_open_files_limit(workers * max_in_flight + BACKLOG + 256)
    try:
        Server(
            "zoo.serve.front:create_front", address=host, port=port, interface=Interfaces.RSGI, factory=True,
            websockets=False, workers=workers, respawn_failed_workers=True, respawn_interval=0.5,
            backlog=BACKLOG, backpressure=max_in_flight,
            http1_settings=HTTP1Settings(header_read_timeout=HEADER_TIMEOUT * 1000, keep_alive=True),
            log_level=LogLevels.info, log_access=False, log_dictconfig=logging_config(),
        ).serve()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
