"""Versions of one model side by side: their metrics, how their recipes differ, and their loss curves overlaid."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from zoo.cards.figures import draw_loss_comparison, json_ready, recipe_label, spec_loss_curve
from zoo.core.errors import ComparisonError
from zoo.core.reference import ModelRef
from zoo.core.registry import get_model
from zoo.store.atomic import storage_errors
from zoo.store.versions import WeightsLocation, WeightsStore


@dataclass(frozen=True)
class ComparisonResult:
    """Versions of one model side by side: each metric and each differing hyperparameter as one value per version
    (in the order of `versions`), the hyperparameters they share, and the loss figure written."""

    model: str
    versions: tuple[int, ...]
    metrics: dict[str, list[Any]]
    recipe_differences: dict[str, list[Any]]
    recipe_shared: dict[str, Any]
    figure: Path

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as `zoo compare --json` prints it (the figure's path as a string)."""
        return {**dataclasses.asdict(self), "versions": list(self.versions), "figure": str(self.figure)}


def compare(refs: Sequence[ModelRef | str], *, weights_dir: WeightsLocation = None,
            figure: str | None = None) -> ComparisonResult:
    """Metrics and recipe differences of two or more versions of one model, and a PNG of their loss curves at
    `figure` (default: MODEL-A-B-loss.png in the current folder)."""
    parsed = [ModelRef.of(ref) for ref in refs]
    names = sorted({ref.name for ref in parsed})
    if len(names) > 1:
        raise ComparisonError(f"expected versions of one model, got versions of {', '.join(names)}")
    if len(parsed) < 2:
        example = names[0] if names else "mnist-mlp"
        raise ComparisonError(f"expected two or more versions of one model to compare, e.g. {example}:1 {example}:2; "
                              f"got {len(parsed)}")
    name = names[0]
    spec = get_model(name)
    store = WeightsStore.at(weights_dir)
    versions = [store.resolve(name, ref.version) for ref in parsed]
    if len(set(versions)) < len(versions):
        raise ComparisonError(f"expected different versions of {name}, got {', '.join(map(str, versions))}")
    manifests = [store.manifest(name, version) for version in versions]
    metric_keys = list(dict.fromkeys(key for m in manifests for key in m.get("metrics", {})))
    params = [{"recipe": m.get("recipe", {}).get("name"), **m.get("recipe", {}).get("params", {})} for m in manifests]
    param_keys = list(dict.fromkeys(key for p in params for key in p))
    recipe = {key: [json_ready(p.get(key)) for p in params] for key in param_keys}
    path = Path(figure or f"{name}-{'-'.join(map(str, versions))}-loss.png").expanduser()
    labels = [f"{ModelRef(name, version)} ({recipe_label(spec, m)})"
              for version, m in zip(versions, manifests, strict=True)]
    with storage_errors(f"write the loss figure {path}"):
        draw_loss_comparison(spec_loss_curve(spec), manifests, labels, f"{name}: training loss of versions "
                             f"{', '.join(map(str, versions))}", path)
    return ComparisonResult(
        name,
        tuple(versions),
        {key: [m.get("metrics", {}).get(key) for m in manifests] for key in metric_keys},
        {key: values for key, values in recipe.items() if len({repr(v) for v in values}) > 1},
        {key: values[0] for key, values in recipe.items() if len({repr(v) for v in values}) == 1},
        path,
    )
