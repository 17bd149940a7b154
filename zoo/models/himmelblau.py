"""himmelblau: the points minimising Himmelblau's function with Adam, as in document 001.

The "model" is the points themselves; there is no forward pass over inputs, so it is not exportable.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from zoo.cards.figures import Drawing, loss_curve
from zoo.core.errors import InvalidOverrideError
from zoo.core.recipes import Recipe
from zoo.core.registry import register_model
from zoo.core.spec import CardFigure, Minimise, ModelSpec
from zoo.training.loops import minimise

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
            raise InvalidOverrideError(
                f"bad value for 'starts': expected a JSON list of [x, y] pairs, got {self.starts!r}"
            )


RECIPES = {
    # Document 001: Adam lr 1e-3 for 20000 steps, from [0,0] and the other starts it mentions.
    "document": HimmelblauRecipe(
        epochs=20000, lr=1e-3, batch_size=1, optimizer="adam", starts=((0.0, 0.0), (1.0, 0.0), (-4.0, 0.0), (4.0, 0.0))
    ),
    # One start per quadrant reaches each of the four minima; one-cycle annealing drives f below 1e-6.
    "default": HimmelblauRecipe(
        epochs=3000,
        lr=0.1,
        batch_size=1,
        optimizer="adam",
        schedule="onecycle",
        starts=((4.0, 4.0), (-4.0, 4.0), (-4.0, -4.0), (4.0, -4.0)),
    ),
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


def trajectories(recipe: HimmelblauRecipe) -> torch.Tensor:
    """Each start's path, [recorded steps, starts, 2]: the recipe's deterministic descent run again on the CPU,
    with the points taken at every progress report (about 200 along the way) after the starts themselves."""
    model = HimmelblauPoints(recipe.starts)
    path = [model.points.detach().clone()]
    minimise(model, recipe, lambda progress: path.append(model.points.detach().clone()))
    return torch.stack(path)


def draw_trajectories(drawing: Drawing, figure) -> None:
    """Himmelblau's contour map with each start's path to the minimum it reaches (the surface document 001 plots)."""
    import numpy as np
    from matplotlib.colors import LogNorm

    grid = np.arange(-6, 6.01, 0.05)
    x, y = np.meshgrid(grid, grid)
    f = himmelblau(torch.from_numpy(np.stack([x, y], axis=-1))).numpy()
    axes = figure.subplots()
    levels = np.logspace(-1, np.log10(f.max()), 24)
    contours = axes.contourf(x, y, f, levels=levels, norm=LogNorm(), cmap="viridis", alpha=0.85)
    figure.colorbar(contours, ax=axes, label="f(x, y), log scale", ticks=[0.1, 1, 10, 100, 1000], format="%g")
    axes.plot(
        *zip(*MINIMA, strict=True), "x", color="red", markersize=8, markeredgewidth=2, label="the four minima, f = 0"
    )
    paths = trajectories(drawing.recipe).numpy()
    ends = drawing.model.points.detach().cpu().numpy()
    for index in range(paths.shape[1]):
        start, end = paths[0, index], ends[index]
        axes.plot(paths[:, index, 0], paths[:, index, 1], color="white", linewidth=1.6)
        axes.plot(*start, "o", color="white", markeredgecolor="black", markersize=7)
        axes.plot(
            *end,
            "*",
            color=f"C{index % 10}",
            markeredgecolor="black",
            markersize=15,
            zorder=5,
            label=f"start ({start[0]:g}, {start[1]:g}) ends at ({end[0]:.3f}, {end[1]:.3f})",
        )
    axes.set_xlim(-6, 6)
    axes.set_ylim(-6, 6)
    axes.set_aspect("equal")
    axes.set_xlabel("x")
    axes.set_ylabel("y")
    axes.set_title(f"{drawing.label}: each start (circle) to the point it reaches (star)", fontsize=10)
    figure.legend(loc="outside lower center", ncols=2, fontsize=8)


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
        figures=(
            loss_curve("step", first=0),
            CardFigure(
                "trajectories.png", "Each start's path to the minimum it reaches", draw_trajectories, size=(8.0, 8.0)
            ),
        ),
        document_result="from [0, 0], [1, 0], [-4, 0], [4, 0] its Adam steps end at (3, 2), (3, 2), (-3.779, -3.283) "
        "and (3.584, -1.848), where f = 0",
    )
