"""What the registry holds for each architecture: plain metadata, and the few functions that differ per model.

A spec says everything the rest of the zoo acts on: how to build the module, its recipes, its objective
(how it is trained and scored) and, when it runs on inputs, its interface (tensors, HTTP form, real example
inputs). Nothing elsewhere compares a model's name, task or data set with a string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

import torch
from torch import nn

from zoo.core.data import DataContext, Splits
from zoo.core.errors import NotExportableError, UnknownRecipeError
from zoo.core.recipes import Recipe, apply_overrides

if TYPE_CHECKING:  # annotations only: the card's figures are drawn by zoo.cards, which builds on the spec
    from matplotlib.figure import Figure

    from zoo.cards.figures import Drawing

# Any callable from an input batch to an output batch: an eval-mode module, or a runtime dressed as one.
Predict = Callable[[torch.Tensor], torch.Tensor]
# A loss: (predictions, targets) -> a scalar tensor.
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# A spec's recipe class: its functions take the recipe of their own model (ModelSpec[MnistRecipe] and so on).
R = TypeVar("R", bound=Recipe)


# The Open Inference Protocol's (v2: KServe, Triton) name of each dtype a TensorSpec may declare, the one mapping
# between them; Triton's model configuration spells the same names after TYPE_.
DATATYPES = {"float32": "FP32", "float16": "FP16", "float64": "FP64", "int64": "INT64", "int32": "INT32",
             "int8": "INT8", "uint8": "UINT8", "bool": "BOOL"}


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor with its shape (`"N"` marks the batch dimension) and dtype (a numpy dtype name)."""

    name: str
    shape: tuple[Any, ...]
    dtype: str = "float32"

    @property
    def datatype(self) -> str:
        """The dtype as the v2 protocol names it (FP32 for float32: DATATYPES)."""
        return DATATYPES[self.dtype]

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
class Interface(Generic[R]):
    """What a model that runs on inputs declares: its tensors, its HTTP form, and real inputs to check it on."""

    input: TensorSpec
    output: TensorSpec
    form: InputForm
    preprocessing: str
    # `count` real inputs (from the data set or its distribution), to verify exports and to store as test data.
    examples: Callable[[R, DataContext, int], torch.Tensor]
    categories: tuple[str, ...] = ()  # a classifier's class names, by output index


def batch_mean(recipe: Recipe) -> Literal["mean", "sum"]:
    """The loss reduction of most losses: the mean over the batch."""
    return "mean"


@dataclass(frozen=True)
class Supervised(Generic[R]):
    """Fit to a data set by minibatch descent on a loss; scored only on predictions over held-out data.

    `data_parallel` says whether the batches can be split over several processes (False for a data set of one
    sample); `loss_reduction` whether the loss is the mean or the sum over a batch, so a split weighs right.
    """

    load_data: Callable[[R, DataContext], Splits]
    loss: Callable[[R], LossFn]
    metrics: Callable[[Predict, Splits, R], dict[str, Any]]
    data_parallel: bool = True
    loss_reduction: Callable[[R], Literal["mean", "sum"]] = batch_mean

    def score(self, predict: Predict, recipe: R, context: DataContext) -> dict[str, Any]:
        """The held-out metrics of any predictor: an eager module or an exported file's runtime."""
        with torch.no_grad():
            return self.metrics(predict, self.load_data(recipe, context), recipe)


@dataclass(frozen=True)
class Minimise:
    """The module's parameters are the answer: training minimises the sum of `module()`; there is no data.

    Both objectives are data: what to load, which loss, how to score; zoo.training.objectives trains them."""

    metrics: Callable[[Any], dict[str, Any]]  # of the spec's own module class
    data_parallel: ClassVar[bool] = False  # no data to split over processes

    def score(self, model: nn.Module, recipe: Recipe, context: DataContext) -> dict[str, Any]:
        with torch.no_grad():
            return self.metrics(model)


Objective = Supervised[Any] | Minimise


@dataclass(frozen=True)
class CardFigure:
    """One figure of a version's model card: its PNG file, its caption, and how it is drawn.

    `draw(drawing, figure)` fills a blank matplotlib Figure of `size` inches (at 100 dpi) from a
    `zoo.cards.figures.Drawing`: the version's spec, recipe, manifest, eval-mode module and data.
    """

    file: str
    caption: str
    draw: Callable[[Drawing, Figure], None]
    size: tuple[float, float] = (8.0, 5.0)


@dataclass(frozen=True)
class ModelSpec(Generic[R]):
    """One registered architecture: its metadata, recipes, objective, and its interface when it runs on inputs."""

    name: str
    summary: str
    source: str
    task: str
    dataset: str
    build: Callable[[R], nn.Module]
    recipes: Mapping[str, R]
    objective: Supervised[R] | Minimise
    interface: Interface[R] | None = None
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

    def required_interface(self) -> Interface[R]:
        """The interface of a model that runs on inputs; NotExportableError (the caller's mistake) for one that takes
        none, so that whatever exports, serves or feeds a model asks here once."""
        if self.interface is None:
            raise NotExportableError(
                f"{self.name} cannot be exported or run on inputs: it has no forward pass over inputs (only a model "
                "whose spec declares an interface can)"
            )
        return self.interface

    def supervised(self) -> Supervised[R]:
        """The objective of a model trained on data; NotExportableError for one that minimises itself (no data)."""
        if not isinstance(self.objective, Supervised):
            raise NotExportableError(f"{self.name} has no data set: its objective minimises the module itself")
        return self.objective

    @property
    def input(self) -> TensorSpec | None:
        return self.interface.input if self.interface else None

    @property
    def output(self) -> TensorSpec | None:
        return self.interface.output if self.interface else None

    @property
    def preprocessing(self) -> str:
        return self.interface.preprocessing if self.interface else "none: the model takes no inputs"

    def recipe(self, name: str | None = None, overrides: Mapping[str, Any] | None = None) -> R:
        """The recipe called `name` (the default when None) with `overrides` applied."""
        name = name or self.default_recipe
        try:
            base = self.recipes[name]
        except KeyError:
            raise UnknownRecipeError(
                f"model {self.name!r} has no recipe {name!r}; expected one of: {', '.join(self.recipes)}"
            ) from None
        return apply_overrides(base, overrides or {})

    def build_module(self, recipe: R, device: torch.device) -> nn.Module:
        """The module for this recipe on `device`, initialised from the recipe's seed (untrained)."""
        torch.manual_seed(recipe.seed)
        return self.build(recipe).to(device)
