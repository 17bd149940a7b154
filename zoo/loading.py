"""Loading a stored version back into its nn.Module, and re-scoring it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from zoo.data import resolve_data_dir
from zoo.recipes import Recipe, recipe_from_dict
from zoo.registry import get_model
from zoo.runtimes import RuntimeModule, open_runtime
from zoo.spec import DataContext, ModelSpec
from zoo.store import StoredVersion, WeightsStore, parse_ref
from zoo.training import resolve_device


@dataclass
class LoadedModel:
    """A stored version in memory: its spec, recipe, eval-mode module and the store's record."""

    spec: ModelSpec
    recipe: Recipe
    model: nn.Module
    stored: StoredVersion

    @property
    def version(self) -> int:
        return self.stored.version

    @property
    def manifest(self) -> dict[str, Any]:
        return self.stored.manifest


def load_version(ref: str, weights_dir: Optional[str] = None, device: str = "cpu") -> LoadedModel:
    """Load `MODEL[:VERSION]` (latest when no version): sha256-checked safetensors into a fresh module."""
    name, version = parse_ref(ref)
    spec = get_model(name)
    stored = WeightsStore(weights_dir).load(name, version, device=resolve_device(device))
    params = stored.manifest["recipe"]["params"]
    recipe = recipe_from_dict(spec.recipes[stored.manifest["recipe"]["name"]], params)
    model = spec.build(recipe).to(resolve_device(device))
    model.load_state_dict(stored.state_dict, strict=True)
    model.eval()
    return LoadedModel(spec, recipe, model, stored)


def evaluate(
    ref: str,
    weights_dir: Optional[str] = None,
    data_dir: Optional[str] = None,
    device: str = "cpu",
    backend: str = "torch",
) -> dict[str, Any]:
    """Recompute a stored version's held-out metrics and set them beside the ones its manifest recorded."""
    loaded = load_version(ref, weights_dir, device)
    model = loaded.model
    if backend != "torch":
        runtime = open_runtime(f"{loaded.spec.name}:{loaded.version}", backend, weights_dir)
        model = RuntimeModule(runtime, loaded.model)
    context = DataContext(resolve_data_dir(data_dir), resolve_device(device))
    splits = loaded.spec.load_data(loaded.recipe, context)
    with torch.no_grad():
        metrics = loaded.spec.metrics(model, splits, loaded.recipe)
    recorded = {k: v for k, v in loaded.manifest["metrics"].items() if k in metrics}
    return {
        "model": loaded.spec.name,
        "version": loaded.version,
        "backend": backend,
        "metrics": metrics,
        "recorded": recorded,
    }
