"""The trainer: recipe -> data -> model -> the objective's loop -> a new weights version."""

from __future__ import annotations

import contextlib
import datetime as dt
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import torch
from torch import nn

from zoo.data import DataContext, resolve_data_dir
from zoo.devices import resolve_device
from zoo.loops import ProgressCallback, check_precision
from zoo.manifest import Manifest
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


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(spec: ModelSpec, recipe: Recipe, device: torch.device) -> nn.Module:
    """The spec's module for this recipe, initialised from the recipe's seed."""
    torch.manual_seed(recipe.seed)
    return spec.build(recipe).to(device)


@contextlib.contextmanager
def reproducible(device: torch.device) -> Iterator[None]:
    """Same seed, same GPU, same metrics: cuDNN's deterministic kernels and no autotuning while training.

    cuBLAS is deterministic on one stream, and the zoo's other CUDA ops in training (index gather, dropout,
    losses, max-pool without overlap, fused optimizers) are too. The CPU needs nothing.
    """
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = saved


def _downsample(history: list[float], points: int = 100) -> list[float]:
    if len(history) <= points:
        return history
    stride = len(history) / points
    return [history[int(i * stride)] for i in range(points)] + [history[-1]]


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
    check_precision(chosen.precision, torch_device)
    store = WeightsStore(weights_dir)
    model = build(spec, chosen, torch_device)
    started = time.perf_counter()
    with reproducible(torch_device):
        trained = spec.objective.train(model, chosen, DataContext(resolve_data_dir(data_dir), torch_device), on_progress)
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
        "precision": chosen.precision,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "training_seconds": round(seconds, 3),
        "artifacts": {},
    }
    version = store.save(name, model.state_dict(), manifest)
    return TrainResult(name, version, metrics, store.manifest(name, version), store.version_dir(name, version))
