"""What the registry holds for each architecture: plain metadata plus the few functions that differ."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from zoo.errors import UnknownRecipeError
from zoo.recipes import Recipe, apply_overrides


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor with its shape (`"N"` marks the batch dimension) and dtype."""

    name: str
    shape: tuple[Any, ...]
    dtype: str = "float32"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass
class Splits:
    """A data set as tensors already on the training device, plus a fingerprint of its content."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    fingerprint: str
    description: str = ""


@dataclass(frozen=True)
class DataContext:
    """Where data comes from and where its tensors go."""

    data_dir: Any  # pathlib.Path
    device: torch.device


@dataclass(frozen=True)
class ModelSpec:
    """One registered architecture: its metadata, recipes, and how to build, feed, train and score it."""

    name: str
    summary: str
    source: str
    task: str
    dataset: str
    preprocessing: str
    input: Optional[TensorSpec]
    output: Optional[TensorSpec]
    build: Callable[[Recipe], nn.Module]
    recipes: Mapping[str, Recipe]
    load_data: Callable[[Recipe, DataContext], Splits]
    loss: Callable[[Recipe], Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
    metrics: Callable[[nn.Module, Splits, Recipe], dict[str, Any]]
    fit: Optional[Callable[..., list[float]]] = None
    notes: str = ""
    default_recipe: str = "default"
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def exportable(self) -> bool:
        return self.input is not None

    def recipe(self, name: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None) -> Recipe:
        """The recipe called `name` (the default when None) with `overrides` applied."""
        name = name or self.default_recipe
        try:
            base = self.recipes[name]
        except KeyError:
            raise UnknownRecipeError(
                f"model {self.name!r} has no recipe {name!r}; expected one of: {', '.join(self.recipes)}"
            ) from None
        return apply_overrides(base, overrides or {})
