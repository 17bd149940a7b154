"""The trainer: recipe -> data -> model -> optimisation loop -> a new weights version."""

from __future__ import annotations

import datetime as dt
import math
import platform
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional

import torch
from torch import nn

from zoo.data import resolve_data_dir
from zoo.errors import DeviceUnavailableError
from zoo.recipes import Recipe
from zoo.registry import get_model
from zoo.spec import DataContext, ModelSpec, Splits
from zoo.store import WeightsStore


@dataclass(frozen=True)
class Progress:
    """A training progress report: optimisation steps done out of the total, and the running loss."""

    step: int
    total: int
    epoch: int
    loss: float


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: the new version, its metrics and manifest."""

    name: str
    version: int
    metrics: dict[str, Any]
    manifest: dict[str, Any]
    path: Any


def resolve_device(device: str = "auto") -> torch.device:
    """`auto` picks CUDA when present; asking for a CUDA device this machine lacks raises."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise DeviceUnavailableError(f"unknown device {device!r}: expected auto, cpu, cuda or cuda:N") from None
    if resolved.type == "cpu":
        return resolved
    if resolved.type != "cuda":
        raise DeviceUnavailableError(f"unsupported device {device!r}: expected auto, cpu, cuda or cuda:N")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise DeviceUnavailableError(f"device {device!r} requested but CUDA is not available on this machine; use --device cpu")
    if resolved.index is not None and resolved.index >= count:
        raise DeviceUnavailableError(f"device {device!r} requested but this machine has {count} CUDA device(s): cuda:0..cuda:{count - 1}")
    return resolved


def make_optimizer(recipe: Recipe, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer the recipe names, with its learning rate and weight decay."""
    params = [p for p in params if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(params, lr=recipe.lr, weight_decay=recipe.weight_decay,
                               momentum=recipe.momentum, foreach=True)
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay)
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay)


def make_schedule(recipe: Recipe, optimizer: torch.optim.Optimizer, total_steps: int):
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total_steps)
    return None


def fit(
    model: nn.Module,
    recipe: Recipe,
    splits: Splits,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    on_progress: Optional[ProgressCallback] = None,
) -> list[float]:
    """Minibatch training over index permutations of device tensors; returns the mean loss of each epoch."""
    x, y = splits.train_x, splits.train_y
    n = len(x)
    batches = math.ceil(n / recipe.batch_size)
    total = recipe.epochs * batches
    optimizer = make_optimizer(recipe, model.parameters())
    schedule = make_schedule(recipe, optimizer, total)
    shuffle = torch.Generator().manual_seed(recipe.seed)
    report_every = max(1, total // 200)
    history: list[float] = []
    step = 0
    for epoch in range(1, recipe.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=shuffle).to(x.device) if batches > 1 else None
        epoch_loss = torch.zeros((), device=x.device)
        for start in range(0, n, recipe.batch_size):
            if order is None:
                batch_x, batch_y = x, y
            else:
                index = order[start:start + recipe.batch_size]
                batch_x, batch_y = x[index], y[index]
            loss = loss_fn(model(batch_x), batch_y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            epoch_loss += loss.detach()
            step += 1
            if on_progress is not None and (step % report_every == 0 or step == total):
                on_progress(Progress(step, total, epoch, loss.item()))
        history.append((epoch_loss / batches).item())
    return history


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build(spec: ModelSpec, recipe: Recipe, device: torch.device) -> nn.Module:
    """The spec's module for this recipe, initialised from the recipe's seed."""
    torch.manual_seed(recipe.seed)
    return spec.build(recipe).to(device)


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
    spec = get_model(name)
    recipe_name = recipe or spec.default_recipe
    chosen = spec.recipe(recipe_name, overrides)
    torch_device = resolve_device(device)
    store = WeightsStore(weights_dir)
    splits = spec.load_data(chosen, DataContext(resolve_data_dir(data_dir), torch_device))
    model = build(spec, chosen, torch_device)
    started = time.perf_counter()
    history = (spec.fit or fit)(model, chosen, splits, spec.loss(chosen), on_progress)
    seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        metrics = spec.metrics(model, splits, chosen)
    metrics.update(initial_train_loss=history[0], final_train_loss=history[-1])
    import torchvision

    manifest = {
        "recipe": {"name": recipe_name, "params": chosen.to_dict()},
        "seed": chosen.seed,
        "metrics": metrics,
        "loss_history": _downsample(history),
        "parameters": count_parameters(model),
        "data": {"fingerprint": splits.fingerprint, "description": splits.description},
        "device": str(torch_device),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "training_seconds": round(seconds, 3),
        "artifacts": {},
    }
    version = store.save(name, model.state_dict(), manifest)
    return TrainResult(name, version, metrics, store.manifest(name, version), store.version_dir(name, version))
