"""The optimisation loops: minibatch descent over device tensors, and direct minimisation of a module's output."""

from __future__ import annotations

import contextlib
import io
import math
import random
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from zoo.core.data import Splits
from zoo.core.errors import InvalidOverrideError
from zoo.core.recipes import Recipe
from zoo.core.spec import LossFn
from zoo.store.atomic import replace_file, storage_errors
from zoo.training.distributed import World, all_ranks_mean, current_world, data_parallel


@dataclass(frozen=True)
class Progress:
    """A training progress report: optimisation steps done out of the total, and the running loss."""

    step: int
    total: int
    epoch: int
    loss: float


ProgressCallback = Callable[[Progress], None]


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse fp16 off CUDA: without fp16 matrix units a CPU runs it 10-40x slower than fp32 (benchmarks/README.md)."""
    if precision == "fp16" and device.type != "cuda":
        raise InvalidOverrideError(f"precision 'fp16' needs a CUDA device, got {str(device)!r}; "
                                   f"use bf16 (or fp32) on {device.type}")


class MixedPrecision:
    """A recipe's precision on one device: autocast around forward and loss, and a gradient scaler for fp16.

    Parameters, gradients and optimizer state stay float32; autocast runs the matrix products and
    convolutions in the lower precision and keeps losses and reductions in float32.
    """

    def __init__(self, precision: str, device: torch.device) -> None:
        check_precision(precision, device)
        self.device_type = device.type
        self.dtype = AUTOCAST_DTYPES.get(precision)
        # fp16's narrow exponent underflows small gradients without loss scaling; bf16 has float32's range.
        self.scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None

    def autocast(self) -> AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """Backward from `loss` and one optimizer step; with fp16, scaled, and skipped when gradients overflow."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        # make_optimizer's fused kernels take the scale and the inf check from the scaler on the device: no host sync.
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()


@dataclass(frozen=True)
class Checkpointing:
    """Where a run keeps its resumable state, how often it writes it (in epochs), and the state it resumes from.

    A checkpoint holds the module, optimizer, schedule, gradient scaler, every random generator (torch's CPU and
    CUDA ones, numpy's, Python's, the loop's shuffling generator: of every rank) and the epoch, so a run resumed
    from it takes the same steps as one never stopped. Only `writer` (rank 0) writes; every rank reads.
    """

    path: Path
    model: str  # the model's name, for messages
    every: int = 1
    resume_from: dict[str, Any] | None = None
    writer: bool = True

    def due(self, epoch: int, epochs: int) -> bool:
        return epoch % self.every == 0 or epoch == epochs

    def save(self, state: dict[str, Any]) -> None:
        """Write `state` beside the checkpoint and rename it over, so a kill never leaves half of one. The run
        folder appears with the first checkpoint: a run that fails before it leaves nothing behind."""
        buffer = io.BytesIO()
        torch.save(state, buffer)  # into memory: torch's own file writer aborts the process on a full disk
        with storage_errors(f"write a new version of {self.model} in {self.path} (its checkpoint)"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(self.path, lambda handle: handle.write(buffer.getbuffer()))


_CHECKPOINTING: ContextVar[Checkpointing | None] = ContextVar("zoo_checkpointing", default=None)


@contextlib.contextmanager
def checkpointing(run: Checkpointing | None) -> Iterator[None]:
    """Have the loops started in this block write (and resume from) `run`'s checkpoints."""
    token = _CHECKPOINTING.set(run)
    try:
        yield
    finally:
        _CHECKPOINTING.reset(token)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint read back with torch's weights-only unpickler: tensors and plain values, never code."""
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_state(shuffle: torch.Generator | None) -> dict[str, Any]:
    """Every random generator of this process, as tensors and plain values."""
    kind, keys, position, has_gauss, gauss = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    state = {"torch": torch.get_rng_state(), "numpy": [kind, keys.tolist(), position, has_gauss, gauss],
             "python": random.getstate(), "shuffle": shuffle.get_state() if shuffle is not None else None}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any], shuffle: torch.Generator | None) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), position, has_gauss, gauss))
    random.setstate(state["python"])
    if shuffle is not None and state["shuffle"] is not None:
        shuffle.set_state(state["shuffle"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def gather_from_ranks(value: Any) -> list[Any]:
    """`value` of every rank, by rank, on every rank (a one-item list for a single process)."""
    if current_world().size <= 1:
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def _checkpoint(run: Checkpointing, epoch: int, step: int, history: list[float], model: nn.Module,
                optimizer: torch.optim.Optimizer, schedule: Any, precision: MixedPrecision,
                shuffle: torch.Generator | None) -> None:
    """Every rank's generators to rank 0, which writes the whole state."""
    rngs = gather_from_ranks(rng_state(shuffle))
    if not run.writer:
        return
    run.save({
        "epoch": epoch, "step": step, "history": list(history), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict() if schedule is not None else None,
        "scaler": precision.scaler.state_dict() if precision.scaler is not None else None, "rng": rngs,
    })


def _restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, schedule: Any,
             precision: MixedPrecision, shuffle: torch.Generator | None) -> tuple[int, int, list[float]]:
    """Put a checkpoint's state back; returns the epoch it was taken after, the step and the loss history."""
    world = current_world()
    rngs = state["rng"]
    if len(rngs) != world.size:
        raise InvalidOverrideError(f"the checkpoint was written by a run of {len(rngs)} processes, this one has "
                                   f"{world.size}; resume it with as many")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    if schedule is not None:
        schedule.load_state_dict(state["schedule"])
    if precision.scaler is not None and state["scaler"] is not None:
        precision.scaler.load_state_dict(state["scaler"])
    set_rng_state(rngs[world.rank], shuffle)
    return state["epoch"], state["step"], list(state["history"])


def make_optimizer(recipe: Recipe, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
    """The optimizer the recipe names, with its learning rate and weight decay.

    Fused kernels, one per parameter: AdamW's step takes a third of the time of its foreach form on CPU, and on
    CUDA a gradient scaler's overflow check stays on the device (no host sync).
    """
    params = [p for p in params if p.requires_grad]
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=recipe.lr, weight_decay=recipe.weight_decay, momentum=recipe.momentum, fused=True
        )
    if recipe.optimizer == "adam":
        return torch.optim.Adam(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True)
    return torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True)


def make_schedule(recipe: Recipe, optimizer: torch.optim.Optimizer, total_steps: int):
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=recipe.lr, total_steps=total_steps)
    return None


def fit(
    model: nn.Module,
    recipe: Recipe,
    splits: Splits,
    loss_fn: LossFn,
    on_progress: ProgressCallback | None = None,
    loss_reduction: str = "mean",
) -> list[float]:
    """Minibatch training over index permutations of device tensors; returns the mean loss of each epoch.

    In a process group of several ranks, every rank draws the same permutation and takes its shard of each
    global batch (`recipe.batch_size` stays the global batch) under DistributedDataParallel; `loss_reduction`
    ("mean" or "sum" over the batch) says how to weigh a shard so the step equals the single-process one.
    """
    world = current_world()
    run, module = _CHECKPOINTING.get(), model
    model = data_parallel(model)
    x, y = splits.train_x, splits.train_y
    n = len(x)
    batches = math.ceil(n / recipe.batch_size)
    total = recipe.epochs * batches
    optimizer = make_optimizer(recipe, model.parameters())
    schedule = make_schedule(recipe, optimizer, total)
    precision = MixedPrecision(recipe.precision, x.device)
    shuffle = torch.Generator().manual_seed(recipe.seed)
    report_every = max(1, total // 200)
    history: list[float] = []
    step, done = 0, 0
    if run is not None and run.resume_from is not None:
        done, step, history = _restore(run.resume_from, module, optimizer, schedule, precision, shuffle)
    for epoch in range(done + 1, recipe.epochs + 1):
        model.train()
        order = torch.randperm(n, generator=shuffle).to(x.device) if batches > 1 else None
        if order is None and world.size > 1:
            order = torch.arange(n, device=x.device)
        epoch_loss = torch.zeros((), device=x.device)
        for start in range(0, n, recipe.batch_size):
            batch_x, batch_y, weight = _batch(x, y, order, start, recipe.batch_size, world, loss_reduction)
            with precision.autocast():
                loss = loss_fn(model(batch_x), batch_y)
            if weight != 1.0:
                # This rank's share of the global batch's loss; the mean over an empty shard (a last batch smaller
                # than the world) is NaN, and the shard adds nothing.
                loss = loss * weight if weight else loss.nan_to_num() * 0.0
            optimizer.zero_grad(set_to_none=True)
            precision.step(loss, optimizer)
            if schedule is not None:
                schedule.step()
            epoch_loss += loss.detach()
            step += 1
            if on_progress is not None and (step % report_every == 0 or step == total):
                on_progress(Progress(step, total, epoch, loss.item()))
        history.append((all_ranks_mean(epoch_loss) / batches).item())
        if run is not None and run.due(epoch, recipe.epochs):
            _checkpoint(run, epoch, step, history, module, optimizer, schedule, precision, shuffle)
    return history


def _batch(x: torch.Tensor, y: torch.Tensor, order: torch.Tensor | None, start: int, batch_size: int, world: World,
           loss_reduction: str) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The batch at `start` of the epoch's `order` (all of x, y when None): this rank's shard, and its loss weight."""
    if order is None:
        return x, y, 1.0
    index, weight = world.shard(order[start : start + batch_size], loss_reduction)
    return x.index_select(0, index), y.index_select(0, index), weight


def minimise(model: nn.Module, recipe: Recipe, on_progress: ProgressCallback | None = None) -> list[float]:
    """Minimise the sum of `model()` over its own parameters for `recipe.epochs` steps; the loss of each step."""
    optimizer = make_optimizer(recipe, model.parameters())
    schedule = make_schedule(recipe, optimizer, recipe.epochs)
    device = next(model.parameters()).device
    precision = MixedPrecision(recipe.precision, device)
    # Losses stay on the device until the end; only progress reports wait for it (on CUDA, no sync per step).
    history = torch.empty(recipe.epochs, dtype=torch.float64, device=device)
    report_every = max(1, recipe.epochs // 200)
    run, done = _CHECKPOINTING.get(), 0
    if run is not None and run.resume_from is not None:
        done, _, previous = _restore(run.resume_from, model, optimizer, schedule, precision, None)
        history[:done] = torch.tensor(previous, dtype=torch.float64)
    for step in range(done + 1, recipe.epochs + 1):
        with precision.autocast():
            loss = model().sum()
        optimizer.zero_grad()
        precision.step(loss, optimizer)
        if schedule is not None:
            schedule.step()
        history[step - 1] = loss.detach()
        if on_progress is not None and (step % report_every == 0 or step == recipe.epochs):
            on_progress(Progress(step, recipe.epochs, step, loss.item()))
        if run is not None and run.due(step, recipe.epochs):
            _checkpoint(run, step, step, history[:step].tolist(), model, optimizer, schedule, precision, None)
    return history.tolist()
