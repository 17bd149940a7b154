"""`zoo serve`: the app under gunicorn, each worker loading its own models (no preload, no shared torch state)."""

from __future__ import annotations

from typing import Any

from gunicorn.app.base import BaseApplication

from serve.models import plan_versions


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

        from serve import create_app

        torch.set_num_threads(1)  # as RUNTIME_THREADS does for ONNX Runtime
        return create_app(self.app_config)


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
    """Serve until stopped; what to serve is checked first, so a missing model or artifact fails here with a ZooError."""
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
