"""Loading a stored version back into its nn.Module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from zoo.core.devices import resolve_device
from zoo.core.errors import IntegrityError
from zoo.core.recipes import Recipe, recipe_from_dict
from zoo.core.reference import ModelRef
from zoo.core.registry import get_model
from zoo.core.spec import ModelSpec
from zoo.inputs.preprocessing import preprocess
from zoo.store.manifest import MANIFEST_FILE, Manifest
from zoo.store.versions import StoredVersion, WeightsLocation, WeightsStore


@dataclass
class LoadedModel:
    """A stored version in memory: its spec, recipe, eval-mode module and the store's record."""

    spec: ModelSpec
    recipe: Recipe
    model: nn.Module
    stored: StoredVersion

    @property
    def version(self) -> int:
        return self.stored.version

    @property
    def manifest(self) -> Manifest:
        return self.stored.manifest

    @property
    def ref(self) -> ModelRef:
        """This version's reference, pinned to its number."""
        return ModelRef(self.spec.name, self.version)

    @property
    def categories(self) -> tuple[str, ...]:
        """A classifier's class names by output index (digits "0" to "9"); empty for other models."""
        return self.spec.interface.categories if self.spec.interface else ()

    @property
    def meta(self) -> dict[str, Any]:
        """What the version is, as plain data: name, version, categories, metrics, recipe and input contract."""
        return {
            "name": self.spec.name,
            "version": self.version,
            "categories": list(self.categories),
            "metrics": self.manifest.get("metrics", {}),
            "recipe": self.manifest.get("recipe"),
            "input": self.spec.input.to_dict() if self.spec.input else None,
            "output": self.spec.output.to_dict() if self.spec.output else None,
            "preprocessing": self.spec.preprocessing,
        }

    def preprocess(self, item: Any) -> torch.Tensor:
        """A PIL image, PNG/JPEG bytes, a path or pixels (digit models), or numbers (value models) as an input
        batch on the module's device: the server's own preprocessing."""
        device = next(self.model.parameters()).device
        return torch.from_numpy(preprocess(self.spec, item)).to(device)


def stored_recipe(spec: ModelSpec, stored: StoredVersion) -> Recipe:
    """The recipe a stored version was trained with, rebuilt from its manifest."""
    where = stored.path / MANIFEST_FILE
    record = stored.manifest.get("recipe")
    if record is None:
        raise IntegrityError(f"{where} has no 'recipe' key; expected the recipe the version was trained with")
    if record["name"] not in spec.recipes:
        raise IntegrityError(f"{where} names recipe {record['name']!r}; {spec.name} has {', '.join(spec.recipes)}")
    try:
        return recipe_from_dict(spec.recipes[record["name"]], record["params"])
    except (KeyError, TypeError, ValueError) as error:
        raise IntegrityError(f"{where} has recipe parameters that {spec.name} does not accept: {error}") from None


def load_model(name: str, version: int | None = None, *, weights_dir: WeightsLocation = None,
               device: str = "cpu") -> LoadedModel:
    """A model with trained weights, like torchvision's `weights=`: the latest version unless one is named
    (yours first, then the released ones); `.model` is the eval-mode module, `.preprocess` its input."""
    return load_stored(ModelRef(name, version), WeightsStore.at(weights_dir), device)


def load_version(ref: ModelRef | str, *, weights_dir: WeightsLocation = None, device: str = "cpu") -> LoadedModel:
    """Load `MODEL[:VERSION]` (latest when no version): sha256-checked safetensors into a fresh module."""
    return load_stored(ModelRef.of(ref), WeightsStore.at(weights_dir), device)


def load_stored(ref: ModelRef, store: WeightsStore, device: str = "cpu") -> LoadedModel:
    """`ref` read from `store` into a fresh module on `device`, its weights' sha256 checked first."""
    spec = get_model(ref.name)
    torch_device = resolve_device(device)
    stored = store.load(ref.name, ref.version, device=torch_device)
    recipe = stored_recipe(spec, stored)
    model = spec.build(recipe).to(torch_device)
    try:
        model.load_state_dict(stored.state_dict, strict=True)
    except RuntimeError as error:
        raise IntegrityError(
            f"{stored.path} holds weights that do not fit {ref.name}: {str(error).splitlines()[0]}"
        ) from None
    model.eval()
    return LoadedModel(spec, recipe, model, stored)
