"""two-layer-net: Linear(1000,100)-ReLU-Linear(100,10) fitted to random data, as in document 000."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from zoo.cards.figures import loss_curve
from zoo.core.data import DataContext, Splits, fingerprint
from zoo.core.recipes import Recipe
from zoo.core.registry import register_model
from zoo.core.spec import InputForm, Interface, ModelSpec, Predict, Supervised, TensorSpec

N, D_IN, H, D_OUT = 64, 1000, 100, 10


def two_layer_net(init: str = "normal") -> nn.Sequential:
    """The document's nn.Sequential; `init="normal"` redraws both weights from N(0, 1) as it does."""
    model = nn.Sequential(nn.Linear(D_IN, H), nn.ReLU(), nn.Linear(H, D_OUT))
    if init == "normal":
        nn.init.normal_(model[0].weight)
        nn.init.normal_(model[2].weight)
    return model


@dataclass(frozen=True)
class TwoLayerNetRecipe(Recipe):
    init: Literal["normal", "default"] = "normal"
    reduction: Literal["sum", "mean"] = "sum"


RECIPES = {
    # Document 000: N(0,1) weights, MSELoss(reduction='sum'), lr 1e-6, 500 full-batch steps of plain SGD
    # (its manual `param -= lr * grad` is exactly SGD without momentum).
    "document": TwoLayerNetRecipe(epochs=500, lr=1e-6, batch_size=N, optimizer="sgd"),
    "default": TwoLayerNetRecipe(epochs=500, lr=1e-3, batch_size=N, optimizer="adam", init="default", reduction="mean"),
}


def random_data(recipe: Recipe, context: DataContext) -> Splits:
    """The document's x ~ N(0,1)^(64x1000), y ~ N(0,1)^(64x10), drawn from the recipe's seed.

    The targets are noise, so there is nothing to generalise to: the held-out split is the data itself.
    """
    generator = torch.Generator().manual_seed(recipe.seed)
    x = torch.randn(N, D_IN, generator=generator)
    y = torch.randn(N, D_OUT, generator=generator)
    x, y = x.to(context.device), y.to(context.device)
    return Splits(x, y, x, y, fingerprint(x, y), f"random x[{N},{D_IN}], y[{N},{D_OUT}] from seed {recipe.seed}")


def mse_sum(predict: Predict, splits: Splits, recipe: Recipe) -> dict:
    return {"loss_sum": float(F.mse_loss(predict(splits.test_x), splits.test_y, reduction="sum"))}


def normal_draws(recipe: Recipe, context: DataContext, count: int) -> torch.Tensor:
    """`count` inputs from the data's own distribution, N(0, 1) in each of the 1000 features."""
    return torch.randn(count, D_IN, generator=torch.Generator().manual_seed(recipe.seed))


@register_model
def two_layer_net_spec() -> ModelSpec:
    return ModelSpec(
        name="two-layer-net",
        summary="Linear(1000,100)-ReLU-Linear(100,10) fitted to random data (N=64)",
        source="000: nn.Sequential, MSELoss(reduction='sum'), manual SGD",
        task="regression",
        dataset="random normal data from the seed",
        build=lambda r: two_layer_net(r.init),
        recipes=RECIPES,
        objective=Supervised(
            load_data=random_data,
            loss=lambda r: lambda pred, target: F.mse_loss(pred, target, reduction=r.reduction),
            metrics=mse_sum,
            loss_reduction=lambda r: r.reduction,
        ),
        interface=Interface(
            input=TensorSpec("x", ("N", D_IN)),
            output=TensorSpec("y", ("N", D_OUT)),
            form=InputForm.VALUES,
            preprocessing="none",
            examples=normal_draws,
        ),
        figures=(loss_curve("iteration", first=0),),
        document_result="the loss falls by more than 1e6 in 500 iterations with its N(0, 1) init, and barely moves "
                        "without it",
        notes="Metrics are on the training data: the targets are random, so there is no held-out task.",
    )
