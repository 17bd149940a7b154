"""The trainer: recipe -> data -> model -> the objective's loop -> a new weights version."""

from __future__ import annotations

import datetime as dt
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from zoo.cards import publish_card
from zoo.data import DataContext, resolve_data_dir
from zoo.devices import resolve_device
from zoo.figures import Drawing
from zoo.loops import ProgressCallback
from zoo.manifest import Manifest, sampled_steps
from zoo.recipes import Recipe
from zoo.registry import get_model
from zoo.spec import ModelSpec
from zoo.store import WeightsStore


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: the new version, its metrics and manifest."""

    name: str
    version: int
    metrics: dict[str, Any]
    manifest: Manifest
    path: Path
    # The card's figures (or the card itself) that could not be drawn; the version is published without them.
    card_failures: tuple[str, ...] = ()


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(spec: ModelSpec, recipe: Recipe, device: torch.device) -> nn.Module:
    """The spec's module for this recipe, initialised from the recipe's seed."""
    torch.manual_seed(recipe.seed)
    return spec.build(recipe).to(device)


def _downsample(history: list[float]) -> list[float]:
    return [history[i] for i in sampled_steps(len(history))]


def train(
    name: str,
    recipe: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    device: str = "auto",
    data_dir: Optional[str] = None,
    weights_dir: Optional[str] = None,
    on_progress: Optional[ProgressCallback] = None,
) -> TrainResult:
    """Train `name` with a recipe and overrides, evaluate it on held-out data, and store a new version."""
    import torchvision

    spec = get_model(name)
    recipe_name = recipe or spec.default_recipe
    chosen = spec.recipe(recipe_name, overrides)
    torch_device = resolve_device(device)
    store = WeightsStore(weights_dir)
    model = build(spec, chosen, torch_device)
    started = time.perf_counter()
    context = DataContext(resolve_data_dir(data_dir), torch_device)
    trained = spec.objective.train(model, chosen, context, on_progress)
    seconds = time.perf_counter() - started
    metrics = {**trained.metrics, "initial_train_loss": trained.history[0], "final_train_loss": trained.history[-1]}
    manifest: Manifest = {
        "recipe": {"name": recipe_name, "params": chosen.to_dict()},
        "seed": chosen.seed,
        "metrics": metrics,
        "loss_history": _downsample(trained.history),
        "parameters": count_parameters(model),
        "data": trained.data,
        "device": str(torch_device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "training_seconds": round(seconds, 3),
        "artifacts": {},
    }

    def add_card(staging: Path, record: Manifest) -> None:
        record["card"] = publish_card(staging, Drawing(spec, chosen, record, model, context))

    version = store.save(name, model.state_dict(), manifest, before_publish=add_card)
    stored = store.manifest(name, version)
    return TrainResult(name, version, metrics, stored, store.version_dir(name, version),
                       tuple(stored.get("card", {}).get("failures", [])))
