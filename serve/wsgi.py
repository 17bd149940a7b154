"""`zoo serve`: the app under gunicorn, each worker loading its own models (no preload, no shared torch state)."""

from __future__ import annotations

import os
import socket
from typing import Any

from gunicorn.app.base import BaseApplication

from zoo.errors import InvalidSettingError
from zoo.serve.models import plan_versions
from zoo.store import WeightsStore


class ZooServer(BaseApplication):
    """gunicorn running `serve.create_app(app_config)` in every worker."""

    def __init__(self, app_config: dict[str, Any], options: dict[str, Any]) -> None:
        self.app_config = app_config
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        import torch

        from zoo.serve import create_app

        torch.set_num_threads(1)  # as RUNTIME_THREADS does for ONNX Runtime
        return create_app(self.app_config)


def check_address(host: str, port: int) -> None:
    """Raise InvalidSettingError unless a server could listen on host:port now."""
    if not 1 <= port <= 65535:
        raise InvalidSettingError(f"--port must be a TCP port from 1 to 65535, got {port}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gunicorn binds
        try:
            probe.bind((host, port))
        except OSError as error:
            raise InvalidSettingError(f"cannot listen on {host}:{port}: {error.strerror or error}; "
                                      "is another server using it? choose another with --port") from None


def check_weights_root(store: WeightsStore) -> None:
    """Raise InvalidSettingError for a named weights root that is missing or unreadable (the default may be absent)."""
    if store.released is not None:
        return
    if not store.root.is_dir():
        raise InvalidSettingError(f"weights root {store.root} does not exist or is not a folder; "
                                  "pass --weights-dir (or $ZOO_WEIGHTS_DIR) naming the folder your versions are in")
    if not os.access(store.root, os.R_OK | os.X_OK):
        raise InvalidSettingError(f"weights root {store.root} is not readable by this user")


def run(
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 2,
    threads: int = 4,
    backend: str = "torch",
    weights_dir: str | None = None,
    max_body_bytes: int = 8 * 1024 * 1024,
    max_batch: int = 256,
    models: tuple[str, ...] | None = None,
) -> None:
    """Serve until stopped; the address, the weights root and what to serve are checked first, so each fails
    here with a one-line ZooError rather than in gunicorn's workers."""
    check_address(host, port)
    check_weights_root(WeightsStore(weights_dir))
    plan_versions(models, weights_dir, backend)
    # Requests already run side by side on workers and threads; intra-op threads would only fight them.
    app_config = {"WEIGHTS_DIR": weights_dir, "BACKEND": backend, "MODELS": models, "RUNTIME_THREADS": 1,
                  "MAX_CONTENT_LENGTH": max_body_bytes, "MAX_BATCH": max_batch}
    options = {
        "bind": f"[{host}]:{port}" if ":" in host else f"{host}:{port}",
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",  # threads per worker, and HTTP keep-alive
        "preload_app": False,
        "timeout": 60,
        "graceful_timeout": 10,
        "keepalive": 5,
        "accesslog": None,
        "errorlog": "-",
        "loglevel": "info",
    }
    ZooServer(app_config, options).run()
