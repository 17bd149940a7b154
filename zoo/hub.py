"""What hubconf.py exposes: a torch.hub entry point per model, taking `weights` as torchvision's builders do."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from zoo.core.devices import resolve_device
from zoo.core.errors import UnknownVersionError
from zoo.core.reference import ModelRef
from zoo.core.registry import get_model
from zoo.store.loading import load_stored
from zoo.store.versions import RELEASED_WEIGHTS, WeightsLocation, WeightsStore

Weights = str | int | None


def released_default(name: str, released_store: WeightsStore) -> int:
    """The version `weights="DEFAULT"` means: the latest one in `released_store` (the released versions)."""
    released = released_store.versions(name)
    if not released:
        raise UnknownVersionError(
            f"{name} has no released weights; pass weights=N for a version you trained, or weights=None"
        )
    return released[-1]


def build_pretrained(
    name: str, weights: Weights = None, weights_dir: WeightsLocation = None, device: str = "cpu"
) -> nn.Module:
    """The eval-mode module of `name`: released weights ("DEFAULT"), version N (an int), or untrained (None)."""
    if weights is None:
        spec = get_model(name)
        return spec.build_module(spec.recipe(), resolve_device(device)).eval()
    if weights == "DEFAULT":
        released = WeightsStore(RELEASED_WEIGHTS)
        return load_stored(ModelRef(name, released_default(name, released)), released, device).model
    if isinstance(weights, bool) or not isinstance(weights, int):
        raise UnknownVersionError(f"weights for {name}: expected 'DEFAULT', a version number or None, got {weights!r}")
    return load_stored(ModelRef(name, weights), WeightsStore.at(weights_dir), device).model


def entrypoint(name: str) -> Callable[..., nn.Module]:
    """A torch.hub entry point for `name`, with a docstring that torch.hub.help shows."""
    spec = get_model(name)
    interface = spec.required_interface()  # only a model that runs on inputs has an entry point

    def load(weights: Weights = None, weights_dir: str | None = None, device: str = "cpu") -> nn.Module:
        return build_pretrained(name, weights, weights_dir, device)

    load.__name__ = load.__qualname__ = name.replace("-", "_")
    load.__doc__ = (
        f"{spec.summary} (zoo model {name!r}, document {spec.source}).\n\n"
        f"Input: {interface.input.name} {list(interface.input.shape)} float32 -> output: {interface.output.name} "
        f"{list(interface.output.shape)}; "
        f"preprocessing: {spec.preprocessing}.\n\n"
        "Args:\n"
        '    weights: "DEFAULT" for the latest released weights, N for version N (yours or released), None (default) '
        'for untrained.\n'
        "    weights_dir: the weights root for weights=N (default: $ZOO_WEIGHTS_DIR, else your user folder).\n"
        "    device: cpu, cuda or cuda:N.\n\n"
        "Returns the nn.Module in eval mode."
    )
    return load
