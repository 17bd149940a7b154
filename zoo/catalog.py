"""Plain-data descriptions of registered models and their stored versions, for listings."""

from __future__ import annotations

from typing import Any, Optional

from zoo.manifest import version_summary
from zoo.registry import get_model
from zoo.store import WeightsStore


def describe_model(name: str, weights_dir: Optional[str] = None) -> dict[str, Any]:
    """Everything `zoo info` shows about a model, as JSON-ready data."""
    spec = get_model(name)
    store = WeightsStore(weights_dir)
    module = spec.build(spec.recipe())
    interface = spec.interface
    return {
        "name": spec.name,
        "summary": spec.summary,
        "source": spec.source,
        "task": spec.task,
        "dataset": spec.dataset,
        "preprocessing": spec.preprocessing,
        "input": interface.input.to_dict() if interface else None,
        "output": interface.output.to_dict() if interface else None,
        "form": interface.form.value if interface else None,
        "exportable": spec.exportable,
        "notes": spec.notes,
        "parameters": sum(p.numel() for p in module.parameters()),
        "architecture": repr(module),
        "default_recipe": spec.default_recipe,
        "recipes": {key: recipe.to_dict() for key, recipe in spec.recipes.items()},
        "weights_dir": store.where,
        "versions": [version_summary(store.manifest(name, version)) for version in store.versions(name)],
    }
