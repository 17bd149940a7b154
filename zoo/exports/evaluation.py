"""Re-scoring a stored version through any backend, on that backend's own outputs."""

from __future__ import annotations

from typing import Any

from zoo.core.data import DataContext, resolve_data_dir
from zoo.core.devices import resolve_device
from zoo.exports.runtimes import check_backend, open_runtime
from zoo.store.loading import load_version


def evaluate(
    ref: str,
    weights_dir: str | None = None,
    data_dir: str | None = None,
    device: str = "cpu",
    backend: str = "torch",
) -> dict[str, Any]:
    """Recompute a stored version's held-out metrics and set them beside the ones its manifest recorded.

    With a backend other than torch, every metric comes from that backend's outputs alone.
    """
    check_backend(backend)
    loaded = load_version(ref, weights_dir, device)
    scored = loaded.model
    if backend != "torch":
        scored = open_runtime(f"{loaded.spec.name}:{loaded.version}", backend, weights_dir).as_torch
    context = DataContext(resolve_data_dir(data_dir), resolve_device(device))
    metrics = loaded.spec.objective.score(scored, loaded.recipe, context)
    recorded = {k: v for k, v in loaded.manifest.get("metrics", {}).items() if k in metrics}
    return {
        "model": loaded.spec.name,
        "version": loaded.version,
        "backend": backend,
        "metrics": metrics,
        "recorded": recorded,
    }
