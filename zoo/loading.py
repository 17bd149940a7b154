"""Loading a stored version back into its nn.Module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import nn

from zoo.devices import resolve_device
from zoo.errors import IntegrityError
from zoo.manifest import MANIFEST_FILE, Manifest
from zoo.recipes import Recipe, recipe_from_dict
from zoo.registry import get_model
from zoo.spec import ModelSpec
from zoo.store import StoredVersion, WeightsStore, parse_ref


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


def load_version(ref: str, weights_dir: Optional[str] = None, device: str = "cpu") -> LoadedModel:
    """Load `MODEL[:VERSION]` (latest when no version): sha256-checked safetensors into a fresh module."""
    name, version = parse_ref(ref)
    spec = get_model(name)
    torch_device = resolve_device(device)
    stored = WeightsStore(weights_dir).load(name, version, device=torch_device)
    recipe = stored_recipe(spec, stored)
    model = spec.build(recipe).to(torch_device)
    try:
        model.load_state_dict(stored.state_dict, strict=True)
    except RuntimeError as error:
        raise IntegrityError(f"{stored.path} holds weights that do not fit {name}: {str(error).splitlines()[0]}") from None
    model.eval()
    return LoadedModel(spec, recipe, model, stored)
