"""What the registry holds for each architecture: plain metadata, and the few functions that differ per model.

A spec says everything the rest of the zoo acts on: how to build the module, its recipes, its objective
(how it is trained and scored) and, when it runs on inputs, its interface (tensors, HTTP form, real example
inputs). Nothing elsewhere compares a model's name, task or data set with a string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from zoo.core.data import DataContext, Splits, fingerprint
from zoo.core.errors import UnknownRecipeError
from zoo.core.recipes import Recipe, apply_overrides
from zoo.training.distributed import current_world
from zoo.training.loops import LossFn, ProgressCallback, fit, minimise

# Any callable from an input batch to an output batch: an eval-mode module, or a runtime dressed as one.
Predict = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor with its shape (`"N"` marks the batch dimension) and dtype."""

    name: str
    shape: tuple[Any, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @property
    def features(self) -> tuple[int, ...]:
        """The shape of one item: everything after the batch dimension."""
        return tuple(self.shape[1:])


class InputForm(str, Enum):
    """How a client gives the model its input over HTTP; the server has one reader and one answer per form."""

    DIGITS = "digits"  # digit pictures or 28x28 pixels; answered with the digit and its probabilities
    VALUES = "values"  # numbers: one item's features or a list of items; answered with the output values


@dataclass(frozen=True)
class Interface:
    """What a model that runs on inputs declares: its tensors, its HTTP form, and real inputs to check it on."""

    input: TensorSpec
    output: TensorSpec
    form: InputForm
    preprocessing: str
    # `count` real inputs (from the data set or its distribution), to verify exports and to store as test data.
    examples: Callable[[Recipe, DataContext, int], torch.Tensor]
    categories: tuple[str, ...] = ()  # a classifier's class names, by output index


@dataclass(frozen=True)
class Trained:
    """What an objective's training produced: the loss history, held-out metrics and a record of the data."""

    history: list[float]
    metrics: dict[str, Any]
    data: dict[str, str]


def batch_mean(recipe: Recipe) -> Literal["mean", "sum"]:
    """The loss reduction of most losses: the mean over the batch."""
    return "mean"


@dataclass(frozen=True)
class Supervised:
    """Fit to a data set by minibatch descent on a loss; scored only on predictions over held-out data.

    `data_parallel` says whether the batches can be split over several processes (False for a data set of one
    sample); `loss_reduction` whether the loss is the mean or the sum over a batch, so a split weighs right.
    """

    load_data: Callable[[Recipe, DataContext], Splits]
    loss: Callable[[Recipe], LossFn]
    metrics: Callable[[Predict, Splits, Recipe], dict[str, Any]]
    data_parallel: bool = True
    loss_reduction: Callable[[Recipe], Literal["mean", "sum"]] = batch_mean

    def train(self, model: nn.Module, recipe: Recipe, context: DataContext,
              on_progress: ProgressCallback | None = None) -> Trained:
        splits = self.load_data(recipe, context)
        history = fit(model, recipe, splits, self.loss(recipe), on_progress, self.loss_reduction(recipe))
        model.eval()
        metrics: dict[str, Any] = {}
        if current_world().is_main:  # every rank holds the same weights; rank 0 scores the whole test set once
            with torch.no_grad():
                metrics = self.metrics(model, splits, recipe)
        return Trained(history, metrics, {"fingerprint": splits.fingerprint, "description": splits.description})

    def score(self, predict: Predict, recipe: Recipe, context: DataContext) -> dict[str, Any]:
        """The held-out metrics of any predictor: an eager module or an exported file's runtime."""
        with torch.no_grad():
            return self.metrics(predict, self.load_data(recipe, context), recipe)


@dataclass(frozen=True)
class Minimise:
    """The module's parameters are the answer: training minimises the sum of `module()`; there is no data."""

    metrics: Callable[[nn.Module], dict[str, Any]]
    data_parallel: ClassVar[bool] = False  # no data to split over processes

    def train(self, model: nn.Module, recipe: Recipe, context: DataContext,
              on_progress: ProgressCallback | None = None) -> Trained:
        start = fingerprint(*(p.detach() for p in model.parameters()))
        history = minimise(model, recipe, on_progress)
        return Trained(
            history,
            self.score(model, recipe, context),
            {
                "fingerprint": start,
                "description": "no data: minimises the module's output from its starting parameters",
            },
        )

    def score(self, model: nn.Module, recipe: Recipe, context: DataContext) -> dict[str, Any]:
        with torch.no_grad():
            return self.metrics(model)


Objective = Supervised | Minimise


@dataclass(frozen=True)
class CardFigure:
    """One figure of a version's model card: its PNG file, its caption, and how it is drawn.

    `draw(drawing, figure)` fills a blank matplotlib Figure of `size` inches (at 100 dpi) from a
    `zoo.cards.figures.Drawing`: the version's spec, recipe, manifest, eval-mode module and data.
    """

    file: str
    caption: str
    draw: Callable[[Any, Any], None]
    size: tuple[float, float] = (8.0, 5.0)


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture: its metadata, recipes, objective, and its interface when it runs on inputs."""

    name: str
    summary: str
    source: str
    task: str
    dataset: str
    build: Callable[[Recipe], nn.Module]
    recipes: Mapping[str, Recipe]
    objective: Objective
    interface: Interface | None = None
    notes: str = ""
    default_recipe: str = "default"
    # The model card's figures (zoo.cards.figures has the shared ones); None: the training loss curve alone.
    figures: tuple[CardFigure, ...] | None = None
    # What the source document itself reports, set beside a version's own results on its card.
    document_result: str = ""

    @property
    def exportable(self) -> bool:
        """Whether the model runs on inputs, and so can be exported, served and run by every backend."""
        return self.interface is not None

    @property
    def data_parallel(self) -> bool:
        """Whether the model can train on several processes, each on its shard of every batch (its objective says)."""
        return self.objective.data_parallel

    @property
    def input(self) -> TensorSpec | None:
        return self.interface.input if self.interface else None

    @property
    def output(self) -> TensorSpec | None:
        return self.interface.output if self.interface else None

    @property
    def preprocessing(self) -> str:
        return self.interface.preprocessing if self.interface else "none: the model takes no inputs"

    def recipe(self, name: str | None = None, overrides: Mapping[str, Any] | None = None) -> Recipe:
        """The recipe called `name` (the default when None) with `overrides` applied."""
        name = name or self.default_recipe
        try:
            base = self.recipes[name]
        except KeyError:
            raise UnknownRecipeError(
                f"model {self.name!r} has no recipe {name!r}; expected one of: {', '.join(self.recipes)}"
            ) from None
        return apply_overrides(base, overrides or {})
