"""Versions of one model side by side: their metrics, how their recipes differ, and their loss curves overlaid."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from zoo.cards.figures import draw_loss_comparison, json_ready, recipe_label, spec_loss_curve
from zoo.core.errors import ComparisonError
from zoo.core.registry import get_model
from zoo.store.atomic import storage_errors
from zoo.store.versions import WeightsStore, parse_ref


def compare(refs: Sequence[str], weights_dir: str | None = None, figure: str | None = None) -> dict[str, Any]:
    """Metrics and recipe differences of two or more versions of one model, and a PNG of their loss curves at
    `figure` (default: MODEL-A-B-loss.png in the current folder)."""
    parsed = [parse_ref(ref) for ref in refs]
    names = sorted({name for name, _ in parsed})
    if len(names) > 1:
        raise ComparisonError(f"expected versions of one model, got versions of {', '.join(names)}")
    if len(parsed) < 2:
        example = names[0] if names else "mnist-mlp"
        raise ComparisonError(f"expected two or more versions of one model to compare, e.g. {example}:1 {example}:2; "
                              f"got {len(parsed)}")
    name = names[0]
    spec = get_model(name)
    store = WeightsStore(weights_dir)
    versions = [store.resolve(name, version) for _, version in parsed]
    if len(set(versions)) < len(versions):
        raise ComparisonError(f"expected different versions of {name}, got {', '.join(map(str, versions))}")
    manifests = [store.manifest(name, version) for version in versions]
    metric_keys = list(dict.fromkeys(key for m in manifests for key in m.get("metrics", {})))
    params = [{"recipe": m.get("recipe", {}).get("name"), **m.get("recipe", {}).get("params", {})} for m in manifests]
    param_keys = list(dict.fromkeys(key for p in params for key in p))
    recipe = {key: [json_ready(p.get(key)) for p in params] for key in param_keys}
    path = Path(figure or f"{name}-{'-'.join(map(str, versions))}-loss.png").expanduser()
    labels = [f"{name}:{version} ({recipe_label(spec, m)})" for version, m in zip(versions, manifests, strict=True)]
    with storage_errors(f"write the loss figure {path}"):
        draw_loss_comparison(spec_loss_curve(spec), manifests, labels, f"{name}: training loss of versions "
                             f"{', '.join(map(str, versions))}", path)
    return {
        "model": name,
        "versions": versions,
        "metrics": {key: [m.get("metrics", {}).get(key) for m in manifests] for key in metric_keys},
        "recipe_differences": {key: values for key, values in recipe.items() if len({repr(v) for v in values}) > 1},
        "recipe_shared": {key: values[0] for key, values in recipe.items() if len({repr(v) for v in values}) == 1},
        "figure": str(path),
    }
