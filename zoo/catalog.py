"""Plain-data descriptions of registered models and their stored versions, for listings."""

from __future__ import annotations

from typing import Any, Optional

from zoo.registry import get_model
from zoo.store import WeightsStore


def describe_model(name: str, weights_dir: Optional[str] = None) -> dict[str, Any]:
    """Everything `zoo info` shows about a model, as JSON-ready data."""
    spec = get_model(name)
    store = WeightsStore(weights_dir)
    module = spec.build(spec.recipe())
    versions = []
    for version in store.versions(name):
        manifest = store.manifest(name, version)
        versions.append({
            "version": version,
            "recipe": manifest["recipe"]["name"],
            "metrics": manifest["metrics"],
            "created": manifest["created"],
            "artifacts": sorted(manifest.get("artifacts", {})),
        })
    return {
        "name": spec.name,
        "summary": spec.summary,
        "source": spec.source,
        "task": spec.task,
        "dataset": spec.dataset,
        "preprocessing": spec.preprocessing,
        "input": spec.input.to_dict() if spec.input else None,
        "output": spec.output.to_dict() if spec.output else None,
        "exportable": spec.exportable,
        "notes": spec.notes,
        "parameters": sum(p.numel() for p in module.parameters()),
        "architecture": repr(module),
        "default_recipe": spec.default_recipe,
        "recipes": {key: recipe.to_dict() for key, recipe in spec.recipes.items()},
        "weights_dir": str(store.root),
        "versions": versions,
    }
