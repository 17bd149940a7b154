"""What the MNIST classifiers share: their input layer, interface, objective, losses and metrics."""

from __future__ import annotations

import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from zoo.core.data import DataContext, Splits, load_mnist, mnist_test_images
from zoo.core.recipes import Recipe
from zoo.core.spec import InputForm, Interface, Predict, Supervised, TensorSpec

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
MNIST_PREPROCESSING = (
    "built into the model: input is raw pixels in [0, 1] (white digit on black, as MNIST), "
    "normalised inside by (x - 0.1307) / 0.3081"
)
EVAL_CHUNK = 10_000


@dataclass(frozen=True)
class ClassifierRecipe(Recipe):
    """Recipe fields every MNIST classifier has: its loss, dropout after hidden layers, label smoothing."""

    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    dropout: float = 0.0
    label_smoothing: float = 0.0
    bounds: typing.ClassVar = {**Recipe.bounds, "dropout": (0.0, 0.95), "label_smoothing": (0.0, 0.5)}


class MnistInput(nn.Module):
    """Raw pixels in [0, 1] to the documents' normalisation, after optional zero padding.

    Parameter-free, so the weights stay the document's; having it in the graph means every caller,
    exported file and server passes the same raw pixels.
    """

    def __init__(self, pad: int = 0) -> None:
        super().__init__()
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad, self.pad, self.pad, self.pad))
        # One allocation instead of two: this runs on every training batch.
        return x.mul(1.0 / MNIST_STD).sub_(MNIST_MEAN / MNIST_STD)


def mnist_splits(recipe: Recipe, context: DataContext) -> Splits:
    return load_mnist(context.data_dir, context.device)


def classification_loss(recipe: ClassifierRecipe) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Cross-entropy (with the recipe's label smoothing), or MSE against one-hot targets."""
    if recipe.loss == "mse":
        return lambda logits, target: F.mse_loss(logits, F.one_hot(target, logits.shape[1]).to(logits.dtype))
    smoothing = recipe.label_smoothing
    return lambda logits, target: F.cross_entropy(logits, target, label_smoothing=smoothing)


def predict_logits(predict: Predict, x: torch.Tensor) -> torch.Tensor:
    """The predictor's outputs in chunks, so the whole test set never has to fit at once."""
    return torch.cat([predict(x[i:i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)])


def classification_metrics(predict: Predict, splits: Splits, recipe: Recipe) -> dict[str, Any]:
    """Test accuracy (%) and mean cross-entropy over the held-out split."""
    return scores_from_logits(predict_logits(predict, splits.test_x), splits.test_y)


def scores_from_logits(logits: torch.Tensor, target: torch.Tensor) -> dict[str, Any]:
    correct = int((logits.argmax(1) == target).sum())
    return {
        "accuracy": round(100.0 * correct / len(target), 4),
        "correct": correct,
        "total": len(target),
        "test_loss": round(float(F.cross_entropy(logits.float(), target)), 6),
    }


def mnist_examples(recipe: Recipe, context: DataContext, count: int) -> torch.Tensor:
    """The first `count` MNIST test digits: the inputs an exported classifier is checked on."""
    return mnist_test_images(context.data_dir, count)[0]


def digits_interface(preprocessing: str = MNIST_PREPROCESSING) -> Interface:
    """A digit classifier's interface: raw 28x28 pixels in [0, 1] in, ten logits out, digits over HTTP."""
    return Interface(
        input=TensorSpec("image", ("N", 1, 28, 28)),
        output=TensorSpec("logits", ("N", 10)),
        form=InputForm.DIGITS,
        preprocessing=preprocessing,
        examples=mnist_examples,
        categories=tuple(str(digit) for digit in range(10)),
    )


MNIST_CLASSIFICATION = Supervised(load_data=mnist_splits, loss=classification_loss, metrics=classification_metrics)
