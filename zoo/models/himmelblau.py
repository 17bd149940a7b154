"""himmelblau: the points minimising Himmelblau's function with Adam, as in document 001.

The "model" is the points themselves; there is no forward pass over inputs, so it is not exportable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from zoo.errors import InvalidOverrideError
from zoo.recipes import Recipe
from zoo.registry import register_model
from zoo.spec import Minimise, ModelSpec

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


def minima_found(model: HimmelblauPoints) -> dict:
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
        build=lambda r: HimmelblauPoints(r.starts),
        recipes=RECIPES,
        objective=Minimise(metrics=minima_found),
        notes="Not exportable: the model is the points, with no forward pass over inputs.",
    )
