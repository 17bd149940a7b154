"""Plain-data descriptions of registered models and their stored versions, for listings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zoo.core.errors import UnknownModelError
from zoo.core.registry import get_model, model_catalog
from zoo.store.manifest import Manifest, version_summary
from zoo.store.versions import WeightsLocation, WeightsStore

if TYPE_CHECKING:  # zoo.core.spec imports torch, which `zoo list` and `zoo info` never load
    from zoo.core.spec import TensorSpec


@dataclass(frozen=True)
class ModelDescription:
    """A model as every listing shows it: the one description that `zoo list`, `zoo info`, /v1/models and the v2
    model metadata (HTTP and gRPC) render, each in its own shape. `entry` is what its spec says (the catalog's
    JSON-ready data: zoo.core.registry.spec_summary), `versions` the one-line view of each version listed
    (version_summary)."""

    entry: dict[str, Any]
    versions: tuple[dict[str, Any], ...] = ()

    @property
    def name(self) -> str:
        return str(self.entry["name"])

    @property
    def input(self) -> TensorSpec | None:
        """The tensor the model takes (None for a model that runs on no inputs)."""
        return _tensor(self.entry["input"])

    @property
    def output(self) -> TensorSpec | None:
        """The tensor the model answers with (None for a model that runs on no inputs)."""
        return _tensor(self.entry["output"])

    @property
    def version_numbers(self) -> list[int]:
        return [summary["version"] for summary in self.versions]


def _tensor(data: dict[str, Any] | None) -> TensorSpec | None:
    from zoo.core.spec import TensorSpec  # the server's metadata reads it, with torch loaded already

    return None if data is None else TensorSpec(data["name"], tuple(data["shape"]), data["dtype"])


def describe(name: str, manifests: Iterable[Manifest] = ()) -> ModelDescription:
    """`name`'s description, listing the versions whose manifests are `manifests` (no torch needed once the catalog
    is cached)."""
    catalog = model_catalog()
    if name not in catalog:
        get_model(name)  # the registry's own error, which names any plugin that failed to import
        raise UnknownModelError(f"unknown model {name!r}; expected one of: {', '.join(catalog)}")
    return ModelDescription(catalog[name], tuple(version_summary(manifest) for manifest in manifests))


def describe_model(name: str, weights_dir: WeightsLocation = None) -> dict[str, Any]:
    """Everything `zoo info` shows about a model, as JSON-ready data: its description with every stored version."""
    describe(name)  # an unknown name fails before any store is read
    store = WeightsStore.at(weights_dir)
    description = describe(name, (store.manifest(name, version) for version in store.versions(name)))
    return {**description.entry, "weights_dir": store.where, "versions": list(description.versions)}
