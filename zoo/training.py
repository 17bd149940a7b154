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

from zoo.cards import publish_card
from zoo.data import DataContext, resolve_data_dir
from zoo.devices import resolve_device
from zoo.distributed import World, all_ranks_reached, from_main_rank, process_group, rank_device, record_failure
from zoo.errors import DeviceUnavailableError, NotDataParallelError
from zoo.figures import Drawing
from zoo.loops import ProgressCallback, check_precision
from zoo.manifest import Manifest, sampled_steps
from zoo.recipes import Recipe
from zoo.registry import get_model
from zoo.spec import ModelSpec
from zoo.store import WeightsStore


@dataclass(frozen=True)
class TrainResult:
    """What a training run produced: the new version, its metrics and manifest (on every rank: rank 0's)."""

    name: str
    version: int
    metrics: dict[str, Any]
    manifest: Manifest
    path: Path
    rank: int = 0  # the process that returned it; only rank 0 reports
    # The card's figures (or the card itself) that could not be drawn; the version is published without them.
    card_failures: tuple[str, ...] = ()


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


def _downsample(history: list[float]) -> list[float]:
    return [history[i] for i in sampled_steps(len(history))]


def check_training(name: str, recipe: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None,
                   device: str = "auto", world_size: int = 1) -> tuple[ModelSpec, Recipe, torch.device]:
    """The spec, recipe and device of a run on `world_size` processes, or the caller's mistake, before any starts."""
    spec = get_model(name)
    chosen = spec.recipe(recipe, overrides)
    torch_device = resolve_device(device)
    check_precision(chosen.precision, torch_device)
    if world_size > 1:
        if not spec.data_parallel:
            raise NotDataParallelError(
                f"{name} cannot train on {world_size} processes: its spec declares it not data-parallel (no batches "
                f"of data to split over them); train it on one process (--nproc-per-node 1)")
        if chosen.batch_size < world_size:
            raise NotDataParallelError(f"batch size {chosen.batch_size} cannot be split over {world_size} processes: "
                                       f"expected a global batch of at least {world_size}")
    return spec, chosen, torch_device


def per_rank_batches(batch_size: int, world_size: int) -> list[int]:
    """How a full global batch is split over the ranks (sizes differ by at most one)."""
    return [len(part) for part in torch.tensor_split(torch.arange(batch_size), world_size)]


def train(
    name: str,
    recipe: Optional[str] = None,
    overrides: Optional[Mapping[str, Any]] = None,
    device: str = "auto",
    data_dir: Optional[str] = None,
    weights_dir: Optional[str] = None,
    on_progress: Optional[ProgressCallback] = None,
) -> TrainResult:
    """Train `name` with a recipe and overrides, evaluate it on held-out data, and store a new version.

    Started as one rank of a distributed run (RANK, WORLD_SIZE, LOCAL_RANK in the environment, see
    zoo.distributed), it trains its shard under DDP; rank 0 evaluates and publishes once every rank is done.
    """
    world = World.from_env()
    try:
        return _train(world, name, recipe, overrides, device, data_dir, weights_dir, on_progress)
    except BaseException as error:
        record_failure(error)
        raise


def _train(world: World, name: str, recipe: Optional[str], overrides: Optional[Mapping[str, Any]], device: str,
           data_dir: Optional[str], weights_dir: Optional[str], on_progress: Optional[ProgressCallback]) -> TrainResult:
    import torchvision

    spec, chosen, torch_device = check_training(name, recipe, overrides, device, world.size)
    recipe_name = recipe or spec.default_recipe
    torch_device = rank_device(torch_device, world)
    if torch_device.type == "cuda" and torch_device.index is not None and torch_device.index >= torch.cuda.device_count():
        raise DeviceUnavailableError(f"local rank {world.local_rank} needs {torch_device} but this machine has "
                                     f"{torch.cuda.device_count()} CUDA device(s); start fewer processes per node")
    store = WeightsStore(weights_dir)
    with process_group(world, torch_device) as backend:
        model = build(spec, chosen, torch_device)
        started = time.perf_counter()
        context = DataContext(resolve_data_dir(data_dir), torch_device)
        with reproducible(torch_device):
            trained = spec.objective.train(model, chosen, context, on_progress)
        seconds = time.perf_counter() - started
        all_ranks_reached()  # a rank that died stops the run here, before anything is published
        published = None
        if world.is_main:
            metrics = {**trained.metrics, "initial_train_loss": trained.history[0],
                       "final_train_loss": trained.history[-1]}
            manifest: Manifest = {
                "recipe": {"name": recipe_name, "params": chosen.to_dict()},
                "seed": chosen.seed,
                "metrics": metrics,
                "loss_history": _downsample(trained.history),
                "parameters": count_parameters(model),
                "data": trained.data,
                "device": str(torch_device),
                "precision": chosen.precision,
                "distributed": {"world_size": world.size, "backend": backend, "global_batch": chosen.batch_size,
                                "per_rank_batch": per_rank_batches(chosen.batch_size, world.size)},
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
            published = (version, metrics, store.manifest(name, version), store.version_dir(name, version))
        version, metrics, manifest, path = from_main_rank(published)
    return TrainResult(name, version, metrics, manifest, path, world.rank,
                       tuple(manifest.get("card", {}).get("failures", [])))
