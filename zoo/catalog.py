"""Plain-data descriptions of registered models and their stored versions, for listings."""

from __future__ import annotations

from typing import Any

from zoo.core.errors import UnknownModelError
from zoo.core.registry import get_model, model_catalog
from zoo.store.manifest import version_summary
from zoo.store.versions import WeightsStore


def describe_model(name: str, weights_dir: str | None = None) -> dict[str, Any]:
    """Everything `zoo info` shows about a model, as JSON-ready data (no torch needed once the catalog is cached)."""
    catalog = model_catalog()
    if name not in catalog:
        get_model(name)  # the registry's own error, which names any plugin that failed to import
        raise UnknownModelError(f"unknown model {name!r}; expected one of: {', '.join(catalog)}")
    store = WeightsStore(weights_dir)
    return {
        **catalog[name],
        "weights_dir": store.where,
        "versions": [version_summary(store.manifest(name, version)) for version in store.versions(name)],
    }
