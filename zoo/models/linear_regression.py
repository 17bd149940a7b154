"""linear-regression: nn.Linear(1,1) recovering y = 0.5x + 30 from noisy samples, as in document 004."""

from __future__ import annotations

import typing
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from zoo.cards.figures import Drawing, loss_curve
from zoo.core.data import DataContext, Splits, fingerprint
from zoo.core.recipes import Recipe
from zoo.core.registry import register_model
from zoo.core.spec import CardFigure, InputForm, Interface, ModelSpec, Predict, Supervised, TensorSpec

X_SCALE = 0.1
TRUE_SLOPE, TRUE_INTERCEPT = 0.5, 30.0


class LinearRegression(nn.Module):
    """nn.Linear(1, 1) on x scaled by 0.1 (the document's `x = x * 0.1`), so callers pass x in the document's units."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x * X_SCALE)


@dataclass(frozen=True)
class LinearRegressionRecipe(Recipe):
    samples: int = 11
    test_samples: int = 1000
    bounds: typing.ClassVar = {**Recipe.bounds, "samples": (2, 10_000_000), "test_samples": (1, 10_000_000)}


RECIPES = {
    # Document 004: 11 samples, SGD lr 1e-2, MSELoss, 1000 full-batch epochs.
    "document": LinearRegressionRecipe(epochs=1000, lr=1e-2, batch_size=11, samples=11),
    "default": LinearRegressionRecipe(epochs=300, lr=0.15, batch_size=1000, samples=1000),
}


def fake_data(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The document's get_fake_data: x integer in [-5, 30), y = 0.5x + 30 + N(0, 1) noise, as [count, 1]."""
    x = torch.randint(-5, 30, (count,), generator=generator).to(torch.float32)
    y = TRUE_SLOPE * x + TRUE_INTERCEPT + torch.randn(count, generator=generator)
    return x.unsqueeze(1), y.unsqueeze(1)


def noisy_line(recipe: Recipe, context: DataContext) -> Splits:
    generator = torch.Generator().manual_seed(recipe.seed)
    train_x, train_y = fake_data(recipe.samples, generator)
    test_x, test_y = fake_data(recipe.test_samples, generator)
    tensors = [t.to(context.device) for t in (train_x, train_y, test_x, test_y)]
    description = (
        f"y = 0.5x + 30 + N(0,1), x in [-5, 30): {recipe.samples} training, {recipe.test_samples} test samples"
    )
    return Splits(*tensors, fingerprint(*tensors), description)


def line_metrics(predict: Predict, splits: Splits, recipe: Recipe) -> dict:
    """Slope and intercept in the document's units, read from predictions at x = 0 and x = 100, and the held-out MSE."""
    at = predict(torch.tensor([[0.0], [100.0]], device=splits.test_x.device)).flatten().double()
    return {
        "slope": round(float(at[1] - at[0]) / 100.0, 6),
        "intercept": round(float(at[0]), 6),
        "test_mse": round(float(F.mse_loss(predict(splits.test_x), splits.test_y)), 6),
    }


def x_grid(recipe: Recipe, context: DataContext, count: int) -> torch.Tensor:
    """`count` evenly spaced x over the held-out range, in the document's units."""
    held_out = noisy_line(recipe, DataContext(context.data_dir, torch.device("cpu"))).test_x
    return torch.linspace(float(held_out.min()), float(held_out.max()), count).unsqueeze(1)


def draw_fitted_line(drawing: Drawing, figure) -> None:
    """Document 004's figure: the training points, the fitted line and its equation in the document's units."""
    splits, model = drawing.splits, drawing.model
    with torch.no_grad():
        line = line_metrics(model, splits, drawing.recipe)
        ends = torch.tensor(
            [[float(splits.train_x.min())], [float(splits.train_x.max())]], device=splits.train_x.device
        )
        fitted = model(ends).flatten().cpu().numpy()
    x = splits.train_x.flatten().cpu().numpy()
    axes = figure.subplots()
    axes.plot(
        x,
        splits.train_y.flatten().cpu().numpy(),
        "o",
        markersize=5 if len(x) < 100 else 2,
        alpha=1.0 if len(x) < 100 else 0.35,
        label=f"the {len(x)} training points",
    )
    axes.plot(
        ends.flatten().cpu().numpy(),
        fitted,
        linewidth=2,
        color="C3",
        label=f"fitted: y = {line['slope']:.3f}x + {line['intercept']:.3f}",
    )
    axes.plot(
        ends.flatten().cpu().numpy(),
        TRUE_SLOPE * ends.flatten().cpu().numpy() + TRUE_INTERCEPT,
        "--",
        color="0.4",
        linewidth=1,
        label=f"the data's line: y = {TRUE_SLOPE}x + {TRUE_INTERCEPT:g}",
    )
    axes.set_xlabel("x (the document's units)")
    axes.set_ylabel("y")
    axes.set_title(f"{drawing.label}: the fitted line over the data (test MSE {line['test_mse']:.3f})")
    axes.grid(True, alpha=0.3)
    axes.legend(loc="upper left")


@register_model
def linear_regression() -> ModelSpec:
    return ModelSpec(
        name="linear-regression",
        summary="nn.Linear(1,1) fitting y = 0.5x + 30 + noise",
        source="004: linear regression with torch.nn",
        task="regression",
        dataset="synthetic y = 0.5x + 30 + N(0,1) from the seed",
        build=lambda r: LinearRegression(),
        recipes=RECIPES,
        objective=Supervised(load_data=noisy_line, loss=lambda r: F.mse_loss, metrics=line_metrics),
        interface=Interface(
            input=TensorSpec("x", ("N", 1)),
            output=TensorSpec("y", ("N", 1)),
            form=InputForm.VALUES,
            preprocessing="built into the model: x in the document's units, scaled by 0.1 inside",
            examples=x_grid,
        ),
        figures=(
            loss_curve(),
            CardFigure(
                "fitted_line.png", "The data points and the fitted line (document 004's figure)", draw_fitted_line
            ),
        ),
        document_result="slope 0.5, intercept 30: the line its noisy data is drawn from",
    )
