"""The trainer: recipe -> data -> model -> the objective's loop -> a new weights version."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import nn

from zoo.core.data import DataContext, resolve_data_dir
from zoo.core.devices import resolve_device
from zoo.core.errors import (
    DeviceUnavailableError,
    IntegrityError,
    InvalidSettingError,
    NotDataParallelError,
    Setting,
    ZooError,
)
from zoo.core.recipes import Recipe
from zoo.core.reference import ModelRef
from zoo.core.registry import get_model
from zoo.core.spec import ModelSpec
from zoo.store.manifest import Manifest, ParentRecord, sampled_steps
from zoo.store.versions import WeightsLocation, WeightsStore
from zoo.training.distributed import (
    World,
    all_ranks_reached,
    from_main_rank,
    process_group,
    rank_device,
    record_failure,
)
from zoo.training.loops import Checkpointing, ProgressCallback, check_precision, checkpointing, load_checkpoint
from zoo.training.objectives import Trained, train_objective

# A run's folder while it trains: ROOT/MODEL/.run-KEY/checkpoint.pt, KEY a hash of everything that decides its
# steps, so the same command finds it again to resume. Removed once the version is published.
RUN_PREFIX = ".run-"
CHECKPOINT_FILE = "checkpoint.pt"


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
    resumed_from: int | None = None  # the epoch whose checkpoint the run resumed from

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as JSON carries it (the path as a string)."""
        return {**dataclasses.asdict(self), "path": str(self.path), "card_failures": list(self.card_failures)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainResult:
        """The result `to_dict` gave."""
        return cls(**{**data, "path": Path(data["path"]), "card_failures": tuple(data["card_failures"])})


@dataclass(frozen=True)
class Publication:
    """A version about to be published: its staging folder, its manifest (not yet written, still to be added to),
    and what made it. A layer above (zoo.publishing) draws the model card into the folder from it."""

    folder: Path
    manifest: Manifest
    spec: ModelSpec
    recipe: Recipe
    model: nn.Module
    context: DataContext


# Called on rank 0 with each version before it is published; what it writes into the folder is published with it.
BeforePublish = Callable[[Publication], None]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


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


def check_training(name: str, recipe: str | None = None, overrides: Mapping[str, Any] | None = None,
                   device: str = "auto", world_size: int = 1) -> tuple[ModelSpec, Recipe, torch.device]:
    """The spec, recipe and device of a run on `world_size` processes, or the caller's mistake, before any starts."""
    spec = get_model(name)
    chosen = spec.recipe(recipe, overrides)
    torch_device = resolve_device(device)
    check_precision(chosen.precision, torch_device)
    if world_size > 1:
        if not spec.data_parallel:
            fix = Setting("nproc_per_node", 1)
            raise NotDataParallelError(
                f"{name} cannot train on {world_size} processes: its spec declares it not data-parallel (no batches "
                f"of data to split over them); train it on one process ({fix})", settings=(fix,))
        if chosen.batch_size < world_size:
            raise NotDataParallelError(f"batch size {chosen.batch_size} cannot be split over {world_size} processes: "
                                       f"expected a global batch of at least {world_size}")
    return spec, chosen, torch_device


def per_rank_batches(batch_size: int, world_size: int) -> list[int]:
    """How a full global batch is split over the ranks (sizes differ by at most one)."""
    return [len(part) for part in torch.tensor_split(torch.arange(batch_size), world_size)]


def train(
    name: str,
    recipe: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    data_dir: str | None = None,
    weights_dir: WeightsLocation = None,
    device: str = "auto",
    on_progress: ProgressCallback | None = None,
    parent: ModelRef | str | None = None,
    resume: bool = False,
    checkpoint_every: int = 1,
    on_resume: Callable[[int, int], None] | None = None,
    before_publish: BeforePublish | None = None,
) -> TrainResult:
    """Train `name` with a recipe and overrides, evaluate it on held-out data, and store a new version.

    `parent` (MODEL[:VERSION] of the same model) fine-tunes: training starts from that version's weights.
    Every `checkpoint_every` epochs the run writes a checkpoint in its run folder; `resume` continues the
    same run (same model, recipe, overrides, data, parent, device and world size) from its last checkpoint,
    calling `on_resume(epoch, epochs)` first, and ends with the weights an unstopped run would have.
    `before_publish` adds files (the model card) to the version before it is published.

    Started as one rank of a distributed run (RANK, WORLD_SIZE, LOCAL_RANK in the environment, see
    zoo.training.distributed), it trains its shard under DDP; rank 0 evaluates and publishes once every rank is done.
    """
    world = World.from_env()
    try:
        store, parent_ref = WeightsStore.at(weights_dir), None if parent is None else ModelRef.of(parent)
        return _train(world, name, recipe, overrides, device, data_dir, store, on_progress, parent_ref, resume,
                      checkpoint_every, on_resume, before_publish)
    except BaseException as error:
        record_failure(error)
        raise


def parent_weights(name: str, parent: ModelRef, store: WeightsStore, device: torch.device,
                   ) -> tuple[ParentRecord, dict[str, torch.Tensor]]:
    """The stored version a fine-tuning run starts from: its manifest record and its (sha256-checked) tensors."""
    if parent.name != name:
        raise InvalidSettingError(f"cannot fine-tune {name} from {str(parent)!r}: expected a version of {name} "
                                  f"(parent={name}:VERSION), got one of {parent.name}")
    stored = store.load(name, parent.version, device=device)
    return {"ref": str(parent.at(stored.version)), "sha256": stored.manifest["weights"]["sha256"],
            "recipe": stored.manifest.get("recipe", {}).get("name")}, stored.state_dict


def run_folder(store: WeightsStore, name: str, recipe_name: str, chosen: Recipe, data_dir: Path, device: torch.device,
               world_size: int, parent: ParentRecord | None) -> Path:
    """The folder of the run these settings make, the same for the same command: ROOT/MODEL/.run-KEY."""
    settings = {"model": name, "recipe": recipe_name, "params": chosen.to_dict(), "data": str(data_dir.resolve()),
                "device": device.type, "world_size": world_size, "parent": parent}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return store.root / name / f"{RUN_PREFIX}{key}"


def _train(world: World, name: str, recipe: str | None, overrides: Mapping[str, Any] | None, device: str,
           data_dir: str | None, store: WeightsStore, on_progress: ProgressCallback | None,
           parent: ModelRef | None, resume: bool, checkpoint_every: int,
           on_resume: Callable[[int, int], None] | None, before_publish: BeforePublish | None) -> TrainResult:
    if checkpoint_every < 1:
        raise InvalidSettingError(f"expected checkpoint_every of at least 1 epoch, got {checkpoint_every}")

    spec, chosen, torch_device = check_training(name, recipe, overrides, device, world.size)
    recipe_name = recipe or spec.default_recipe
    torch_device = rank_device(torch_device, world)
    index = torch_device.index
    if torch_device.type == "cuda" and index is not None and index >= torch.cuda.device_count():
        raise DeviceUnavailableError(
            f"local rank {world.local_rank} needs {torch_device} but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s); start fewer processes per node"
        )
    parent_record, parent_state = parent_weights(name, parent, store, torch_device) if parent else (None, None)
    context = DataContext(resolve_data_dir(data_dir), torch_device)
    folder = run_folder(store, name, recipe_name, chosen, context.data_dir, torch_device, world.size, parent_record)
    setup = RunSetup(world, spec, name, recipe_name, chosen, torch_device, store, context, parent_record,
                     parent_state, on_progress, before_publish)
    with run_lock(folder, world, resume) as folder:
        return _train_in(setup, folder, resume, checkpoint_every, on_resume)


@dataclass(frozen=True)
class RunSetup:
    """Everything a run's steps are decided by, resolved once before it starts, and its callbacks."""

    world: World
    spec: ModelSpec
    name: str
    recipe_name: str
    chosen: Recipe
    device: torch.device
    store: WeightsStore
    context: DataContext
    parent_record: ParentRecord | None
    parent_state: dict[str, torch.Tensor] | None
    on_progress: ProgressCallback | None
    before_publish: BeforePublish | None


@contextlib.contextmanager
def run_lock(folder: Path, world: World, resume: bool) -> Iterator[Path]:
    """The run folder this process may use: `folder` itself, held by a lock while the run trains, or, when a run with
    the same settings is training at the same time, a folder of this run's own (which nothing will resume). Resuming
    a run that is still training is refused.

    The lock lives in the temp folder, keyed by the run folder's path, so that a run makes nothing in the weights
    root before its first checkpoint (a failing run leaves the root as it found it)."""
    if not world.is_main:  # only the main rank writes checkpoints; every rank reads `folder` when resuming
        yield folder
        return
    key = hashlib.sha256(str(folder.resolve()).encode()).hexdigest()[:16]
    lock = FileLock(str(Path(tempfile.gettempdir()) / f"zoo-run-{os.getuid()}-{key}.lock"), timeout=0)
    try:
        lock.acquire()
    except Timeout:
        if resume:
            raise InvalidSettingError(
                f"cannot resume: a run with these settings is training now (it holds "
                f"{lock.lock_file}); wait for it to finish, or stop it first"
            ) from None
        yield folder.with_name(f"{folder.name}-{os.getpid()}")
        return
    try:
        yield folder
    finally:
        lock.release()


def _train_in(setup: RunSetup, folder: Path, resume: bool, checkpoint_every: int,
              on_resume: Callable[[int, int], None] | None) -> TrainResult:
    world, name, chosen = setup.world, setup.name, setup.chosen
    checkpoint = folder / CHECKPOINT_FILE
    state = None
    if resume:
        if not checkpoint.is_file():
            raise InvalidSettingError(
                f"nothing to resume: no checkpoint of a {name} run with these settings in "
                f"{folder}; train without resume to start one"
            )
        try:
            state = load_checkpoint(checkpoint)
        except Exception as error:  # torch raises many kinds for a damaged file
            raise IntegrityError(
                f"{checkpoint} cannot be read ({str(error).splitlines()[0][:200]}); remove "
                f"{folder} and train without resume"
            ) from None
        if world.is_main and on_resume is not None:
            on_resume(state["epoch"], chosen.epochs)
    elif world.is_main:
        shutil.rmtree(folder, ignore_errors=True)  # an earlier run's checkpoint is not this run's to continue
    run = Checkpointing(checkpoint, name, checkpoint_every, state, writer=world.is_main)
    try:
        return _run(setup, run)
    except ZooError:
        # A failure the zoo diagnosed (its message says what to fix) leaves nothing behind, as a failed version does;
        # a run killed, interrupted or crashed keeps its folder, to be resumed.
        if world.is_main:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def _run(setup: RunSetup, run: Checkpointing) -> TrainResult:
    world, spec, name, chosen, torch_device = setup.world, setup.spec, setup.name, setup.chosen, setup.device
    store, context, parent_record, parent_state = setup.store, setup.context, setup.parent_record, setup.parent_state
    with process_group(world, torch_device) as backend:
        model = spec.build_module(chosen, torch_device)
        if parent_state is not None and parent_record is not None:
            try:
                model.load_state_dict(parent_state, strict=True)
            except RuntimeError as error:
                raise InvalidSettingError(
                    f"the weights of {parent_record['ref']} do not fit {name} built with this "
                    f"recipe: {str(error).splitlines()[0]}"
                ) from None
        started = time.perf_counter()
        with reproducible(torch_device), checkpointing(run):
            trained = train_objective(spec.objective, model, chosen, context, setup.on_progress)
        seconds = time.perf_counter() - started
        all_ranks_reached()  # a rank that died stops the run here, before anything is published
        published = None
        if world.is_main:
            manifest = _manifest(setup.recipe_name, chosen, trained, model, torch_device, world, backend, seconds)
            metrics = manifest["metrics"]
            if parent_record is not None:
                manifest["parent"] = parent_record

            def add_files(staging: Path, record: Manifest) -> None:
                if setup.before_publish is not None:
                    setup.before_publish(Publication(staging, record, spec, chosen, model, context))

            version = store.save(name, model.state_dict(), manifest, before_publish=add_files)
            shutil.rmtree(run.path.parent, ignore_errors=True)  # published: nothing left to resume
            published = (version, metrics, store.manifest(name, version), store.version_dir(name, version))
        version, metrics, manifest, path = from_main_rank(published)
    return TrainResult(
        name,
        version,
        metrics,
        manifest,
        path,
        world.rank,
        tuple(manifest.get("card", {}).get("failures", [])),
        run.resume_from["epoch"] if run.resume_from else None,
    )


def _manifest(recipe_name: str, chosen: Recipe, trained: Trained, model: nn.Module, device: torch.device,
              world: World, backend: str | None, seconds: float) -> Manifest:
    """The new version's manifest: how it was made and what it scored (the store adds name, version and weights)."""
    import torchvision

    return {
        "recipe": {"name": recipe_name, "params": chosen.to_dict()},
        "seed": chosen.seed,
        "metrics": {**trained.metrics, "initial_train_loss": trained.history[0],
                    "final_train_loss": trained.history[-1]},
        "loss_history": _downsample(trained.history),
        "parameters": count_parameters(model),
        "data": trained.data,
        "device": str(device),
        "precision": chosen.precision,
        "distributed": {
            "world_size": world.size,
            "backend": backend,
            "global_batch": chosen.batch_size,
            "per_rank_batch": per_rank_batches(chosen.batch_size, world.size),
        },
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "python": platform.python_version(),
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "training_seconds": round(seconds, 3),
        "artifacts": {},
    }
