"""himmelblau: the points minimising Himmelblau's function with Adam, as in document 001.

The "model" is the points themselves; there is no forward pass over inputs, so it is not exportable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn

from zoo.data import fingerprint
from zoo.errors import InvalidOverrideError
from zoo.recipes import Recipe
from zoo.registry import register_model
from zoo.spec import DataContext, ModelSpec, Splits
from zoo.training import Progress, make_optimizer, make_schedule

# Himmelblau's four minima, all with f = 0.
MINIMA = ((3.0, 2.0), (-2.805118, 3.131312), (-3.779310, -3.283186), (3.584428, -1.848126))


def himmelblau(xy: torch.Tensor) -> torch.Tensor:
    x, y = xy[..., 0], xy[..., 1]
    return (x**2 + y - 11) ** 2 + (x + y**2 - 7) ** 2


class HimmelblauPoints(nn.Module):
    """One learnable 2-D point per start; forward() is Himmelblau's function at each point."""

    def __init__(self, starts: tuple[tuple[float, float], ...]) -> None:
        super().__init__()
        self.points = nn.Parameter(torch.tensor(starts, dtype=torch.float32))

    def forward(self) -> torch.Tensor:
        return himmelblau(self.points)


@dataclass(frozen=True)
class HimmelblauRecipe(Recipe):
    starts: tuple[tuple[float, float], ...] = ((0.0, 0.0),)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.starts or any(len(p) != 2 for p in self.starts):
            raise InvalidOverrideError(f"bad value for 'starts': expected a JSON list of [x, y] pairs, got {self.starts!r}")


RECIPES = {
    # Document 001: Adam lr 1e-3 for 20000 steps, from [0,0] and the other starts it mentions.
    "document": HimmelblauRecipe(epochs=20000, lr=1e-3, batch_size=1, optimizer="adam",
                                 starts=((0.0, 0.0), (1.0, 0.0), (-4.0, 0.0), (4.0, 0.0))),
    # One start per quadrant reaches each of the four minima; one-cycle annealing drives f below 1e-6.
    "default": HimmelblauRecipe(epochs=3000, lr=0.1, batch_size=1, optimizer="adam", schedule="onecycle",
                                starts=((4.0, 4.0), (-4.0, 4.0), (-4.0, -4.0), (4.0, -4.0))),
}


def no_data(recipe: HimmelblauRecipe, context: DataContext) -> Splits:
    starts = torch.tensor(recipe.starts)
    empty = torch.empty(0)
    return Splits(empty, empty, empty, empty, fingerprint(starts), f"no data; starts {list(recipe.starts)}")


def descend(model: HimmelblauPoints, recipe: Recipe, splits: Splits, loss_fn: Optional[Callable],
            on_progress=None) -> list[float]:
    """Minimise the sum of f over the points; Adam is per-coordinate, so each point moves as if alone."""
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


def minima_found(model: HimmelblauPoints, splits: Splits, recipe: Recipe) -> dict:
    points = model.points.detach().cpu()
    values = himmelblau(points)
    found = {i for p in points for i, m in enumerate(MINIMA) if torch.dist(p, torch.tensor(m)) < 1e-3}
    return {
        "points": [[round(v, 4) for v in p] for p in points.tolist()],
        "f": [float(f"{v:.3g}") for v in values.tolist()],
        "max_f": float(f"{values.max().item():.3g}"),
        "minima_found": len(found),
    }


@register_model
def himmelblau_spec() -> ModelSpec:
    return ModelSpec(
        name="himmelblau",
        summary="Points minimising Himmelblau's function, found with Adam",
        source="001: 2-D function optimisation",
        task="optimisation",
        dataset="none",
        preprocessing="none",
        input=None,
        output=None,
        build=lambda r: HimmelblauPoints(r.starts),
        recipes=RECIPES,
        load_data=no_data,
        loss=lambda r: None,
        metrics=minima_found,
        fit=descend,
        notes="Not exportable: the model is the points, with no forward pass over inputs.",
    )
