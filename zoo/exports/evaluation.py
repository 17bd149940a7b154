"""Re-scoring a stored version through any backend, on that backend's own outputs."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from zoo.core.data import DataContext, resolve_data_dir
from zoo.core.devices import resolve_device
from zoo.core.reference import ModelRef
from zoo.core.spec import Predict, Supervised
from zoo.exports.runtimes import check_backend, open_stored
from zoo.store.loading import load_stored
from zoo.store.versions import WeightsLocation, WeightsStore


@dataclass(frozen=True)
class EvaluationResult:
    """A version's held-out metrics recomputed on one backend, beside those its manifest recorded."""

    model: str
    version: int
    backend: str
    metrics: dict[str, Any]
    recorded: dict[str, Any]  # the manifest's metrics of the same names

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as `zoo evaluate --json` prints it."""
        return dataclasses.asdict(self)


def evaluate(
    ref: ModelRef | str,
    *,
    data_dir: str | None = None,
    weights_dir: WeightsLocation = None,
    device: str = "cpu",
    backend: str = "torch",
) -> EvaluationResult:
    """Recompute a stored version's held-out metrics and set them beside the ones its manifest recorded.

    With a backend other than torch, every metric comes from that backend's outputs alone.
    """
    check_backend(backend)
    store = WeightsStore.at(weights_dir)
    loaded = load_stored(ModelRef.of(ref), store, device)
    scored: Predict = loaded.model
    if backend != "torch":
        scored = open_stored(loaded.ref, store, backend).as_torch
    context = DataContext(resolve_data_dir(data_dir), resolve_device(device))
    objective = loaded.spec.objective
    if isinstance(objective, Supervised):
        metrics = objective.score(scored, loaded.recipe, context)
    else:  # a minimised model is scored on its own parameters: only the torch backend has them
        metrics = objective.score(loaded.model, loaded.recipe, context)
    recorded = {k: v for k, v in loaded.manifest.get("metrics", {}).items() if k in metrics}
    return EvaluationResult(loaded.spec.name, loaded.version, backend, metrics, recorded)
