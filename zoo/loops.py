"""The optimisation loops: minibatch descent over device tensors, and direct minimisation of a module's output."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch
from torch import nn

from zoo.data import Splits
from zoo.distributed import all_ranks_mean, current_world, data_parallel
from zoo.recipes import Recipe

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Progress:
    """A training progress report: optimisation steps done out of the total, and the running loss."""

    step: int
    total: int
    epoch: int
    loss: float


ProgressCallback = Callable[[Progress], None]


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
    loss_fn: LossFn,
    on_progress: Optional[ProgressCallback] = None,
    loss_reduction: str = "mean",
) -> list[float]:
    """Minibatch training over index permutations of device tensors; returns the mean loss of each epoch.

    In a process group of several ranks, every rank draws the same permutation and takes its shard of each
    global batch (`recipe.batch_size` stays the global batch) under DistributedDataParallel; `loss_reduction`
    ("mean" or "sum" over the batch) says how to weigh a shard so the step equals the single-process one.
    """
    world = current_world()
    model = data_parallel(model)
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
        if order is None and world.size > 1:
            order = torch.arange(n, device=x.device)
        epoch_loss = torch.zeros((), device=x.device)
        for start in range(0, n, recipe.batch_size):
            weight = 1.0
            if order is None:
                batch_x, batch_y = x, y
            else:
                index, weight = world.shard(order[start:start + recipe.batch_size], loss_reduction)
                batch_x, batch_y = x[index], y[index]
            loss = loss_fn(model(batch_x), batch_y)
            if weight != 1.0:
                # This rank's share of the global batch's loss; the mean over an empty shard (a last batch smaller
                # than the world) is NaN, and the shard adds nothing.
                loss = loss * weight if weight else loss.nan_to_num() * 0.0
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            epoch_loss += loss.detach()
            step += 1
            if on_progress is not None and (step % report_every == 0 or step == total):
                on_progress(Progress(step, total, epoch, loss.item()))
        history.append((all_ranks_mean(epoch_loss) / batches).item())
    return history


def minimise(model: nn.Module, recipe: Recipe, on_progress: Optional[ProgressCallback] = None) -> list[float]:
    """Minimise the sum of `model()` over its own parameters for `recipe.epochs` steps; the loss of each step."""
    optimizer = make_optimizer(recipe, model.parameters())
    schedule = make_schedule(recipe, optimizer, recipe.epochs)
    history = []
    report_every = max(1, recipe.epochs // 200)
    for step in range(1, recipe.epochs + 1):
        loss = model().sum()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if schedule is not None:
            schedule.step()
        history.append(loss.item())
        if on_progress is not None and (step % report_every == 0 or step == recipe.epochs):
            on_progress(Progress(step, recipe.epochs, step, history[-1]))
    return history
