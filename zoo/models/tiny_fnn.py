"""tiny-fnn: the 2-2-2 network of document 003 with hand-set weights, and the knobs of its exercises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from zoo.cards.figures import loss_curve
from zoo.core.data import DataContext, Splits, fingerprint
from zoo.core.errors import InvalidOverrideError
from zoo.core.recipes import Recipe
from zoo.core.registry import register_model
from zoo.core.spec import InputForm, Interface, ModelSpec, Predict, Supervised, TensorSpec

X = [[0.5, 0.3]]
Y = [[0.23, -0.07]]
W1 = [[0.2, 0.5], [-0.4, 0.6]]
W2 = [[0.1, -0.3], [-0.5, 0.8]]
ACTIVATIONS = {"sigmoid": torch.sigmoid, "relu": torch.relu}


class TinyFNN(nn.Module):
    """fc1(2,2)-act-fc2(2,2)-act. With `init="document"`: the document's w1, w2 and biases fixed at 0.

    The document re-assigns zero biases on every forward pass, so they never move; here they are
    zero and frozen, which trains the same.
    """

    def __init__(self, activation: str = "sigmoid", init: str = "document") -> None:
        super().__init__()
        self.fc1 = nn.Linear(2, 2)
        self.fc2 = nn.Linear(2, 2)
        self.activation = activation
        if init == "document":
            with torch.no_grad():
                self.fc1.weight.copy_(torch.tensor(W1))
                self.fc2.weight.copy_(torch.tensor(W2))
                for bias in (self.fc1.bias, self.fc2.bias):
                    bias.zero_()
                    bias.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = ACTIVATIONS[self.activation]
        return act(self.fc2(act(self.fc1(x))))


@dataclass(frozen=True)
class TinyFNNRecipe(Recipe):
    activation: Literal["sigmoid", "relu"] = "sigmoid"
    loss: Literal["mse", "bce"] = "mse"
    init: Literal["document", "none"] = "document"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss == "bce" and self.activation != "sigmoid":
            raise InvalidOverrideError(
                f"loss=bce needs outputs in [0, 1], so activation=sigmoid; got activation={self.activation}"
            )


RECIPES = {
    # Document 003: Sigmoid + MSELoss + SGD lr 1, ten steps on the single sample.
    "document": TinyFNNRecipe(epochs=10, lr=1.0, batch_size=1),
    "default": TinyFNNRecipe(epochs=200, lr=0.05, batch_size=1, optimizer="adam"),
}


def one_sample(recipe: Recipe, context: DataContext) -> Splits:
    x, y = torch.tensor(X, device=context.device), torch.tensor(Y, device=context.device)
    return Splits(x, y, x, y, fingerprint(x, y), "the document's single sample x=[0.5, 0.3], y=[0.23, -0.07]")


def loss_for(recipe: TinyFNNRecipe):
    if recipe.loss == "bce":
        # BCE is defined for targets in [0, 1]; the document's y1 = -0.07 is not, so it is clamped to 0.
        return lambda output, target: F.binary_cross_entropy(output, target.clamp(0.0, 1.0))
    return F.mse_loss


def fit_metrics(predict: Predict, splits: Splits, recipe: TinyFNNRecipe) -> dict:
    output = predict(splits.test_x)
    return {"loss": float(loss_for(recipe)(output, splits.test_y)), "output": [round(v, 6) for v in output[0].tolist()]}


def unit_square(recipe: Recipe, context: DataContext, count: int) -> torch.Tensor:
    """The document's sample, then points spread over [0, 1]^2 around it."""
    spread = torch.rand(count - 1, 2, generator=torch.Generator().manual_seed(recipe.seed))
    return torch.cat([torch.tensor(X), spread])


@register_model
def tiny_fnn() -> ModelSpec:
    return ModelSpec(
        name="tiny-fnn",
        summary="2-2-2 sigmoid network with the document's hand-set weights, one training sample",
        source="003: FNN backpropagation exercise (Sigmoid + MSE + SGD)",
        task="regression",
        dataset="one sample: x=[0.5, 0.3], y=[0.23, -0.07]",
        build=lambda r: TinyFNN(r.activation, r.init),
        recipes=RECIPES,
        # One training sample: there is no batch to split over processes.
        objective=Supervised(load_data=one_sample, loss=loss_for, metrics=fit_metrics, data_parallel=False),
        interface=Interface(
            input=TensorSpec("x", ("N", 2)),
            output=TensorSpec("y", ("N", 2)),
            form=InputForm.VALUES,
            preprocessing="none",
            examples=unit_square,
        ),
        # Document 003 plots the loss at each of its steps, counted from 0.
        figures=(loss_curve("step", first=0, markers=True),),
        document_result="loss 0.2097 at step 0, falling at each of its 10 steps",
        notes="Exercises: --set activation=relu, loss=bce, optimizer=adam, init=none, and other --lr values. With "
              "loss=bce the target -0.07 is clamped to 0 (BCE needs targets in [0, 1]).",
    )
