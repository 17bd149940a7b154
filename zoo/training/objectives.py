"""Training an objective: the loop a spec's Supervised or Minimise objective asks for, and what it produced."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zoo.core.data import DataContext, fingerprint
from zoo.core.recipes import Recipe
from zoo.core.spec import Minimise, Objective, Supervised
from zoo.store.manifest import DataRecord
from zoo.training.distributed import current_world
from zoo.training.loops import ProgressCallback, fit, minimise


@dataclass(frozen=True)
class Trained:
    """What an objective's training produced: the loss history, held-out metrics and a record of the data."""

    history: list[float]
    metrics: dict[str, Any]
    data: DataRecord


def train_objective(objective: Objective, model: nn.Module, recipe: Recipe, context: DataContext,
                    on_progress: ProgressCallback | None = None) -> Trained:
    """Train `model` in place by `objective`'s loop, then score it on held-out data (Minimise: on itself)."""
    if isinstance(objective, Supervised):
        return _supervised(objective, model, recipe, context, on_progress)
    return _minimised(objective, model, recipe, context, on_progress)


def _supervised(objective: Supervised, model: nn.Module, recipe: Recipe, context: DataContext,
                on_progress: ProgressCallback | None) -> Trained:
    splits = objective.load_data(recipe, context)
    history = fit(model, recipe, splits, objective.loss(recipe), on_progress, objective.loss_reduction(recipe))
    model.eval()
    metrics: dict[str, Any] = {}
    if current_world().is_main:  # every rank holds the same weights; rank 0 scores the whole test set once
        with torch.no_grad():
            metrics = objective.metrics(model, splits, recipe)
    return Trained(history, metrics, {"fingerprint": splits.fingerprint, "description": splits.description})


def _minimised(objective: Minimise, model: nn.Module, recipe: Recipe, context: DataContext,
               on_progress: ProgressCallback | None) -> Trained:
    start = fingerprint(*(p.detach() for p in model.parameters()))
    history = minimise(model, recipe, on_progress)
    return Trained(
        history,
        objective.score(model, recipe, context),
        {"fingerprint": start, "description": "no data: minimises the module's output from its starting parameters"},
    )
