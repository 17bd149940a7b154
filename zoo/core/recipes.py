"""Training recipes: typed dataclasses of hyperparameters, and overrides applied to them by name."""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from zoo.core.errors import InvalidOverrideError

# Arithmetic of the forward pass and loss: autocast to bf16 or fp16 for the matrix products and convolutions,
# or none. Weights, optimizer state and every metric stay float32 whatever is chosen.
Precision = Literal["fp32", "bf16", "fp16"]
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)


@dataclass(frozen=True)
class Recipe:
    """Hyperparameters every recipe has; each model subclasses it with its own fields."""

    epochs: int
    lr: float
    batch_size: int
    seed: int = 0
    optimizer: Literal["sgd", "adam", "adamw"] = "sgd"
    weight_decay: float = 0.0
    momentum: float = 0.0  # SGD only
    schedule: Literal["constant", "onecycle"] = "constant"
    precision: Precision = "fp32"

    # Inclusive numeric bounds per field; subclasses extend it. Checked on every construction.
    bounds: typing.ClassVar[dict[str, tuple[float, float]]] = {
        "epochs": (1, 10_000_000),
        "lr": (1e-12, 1e3),
        "batch_size": (1, 10_000_000),
        "weight_decay": (0.0, 1.0),
        "momentum": (0.0, 0.999),
    }

    def __post_init__(self) -> None:
        for key, (low, high) in type(self).bounds.items():
            value = getattr(self, key)
            if not low <= value <= high:
                raise InvalidOverrideError(
                    f"bad value for {key!r}: expected a number in [{low:g}, {high:g}], got {value!r}"
                )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def recipe_fields(recipe: Recipe) -> dict[str, Any]:
    """Each field's name mapped to its resolved type annotation."""
    hints = typing.get_type_hints(type(recipe))
    return {f.name: hints[f.name] for f in dataclasses.fields(recipe)}


def describe_type(tp: Any) -> str:
    """A short human name for a field type: `int`, `one of relu, sigmoid`, `JSON list`."""
    if typing.get_origin(tp) is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(tp)))
    return getattr(tp, "__name__", None) if tp in (int, float, bool, str) else "JSON list"


def coerce(key: str, value: Any, tp: Any) -> Any:
    """Convert `value` (a CLI string or a JSON value) to the field type `tp`, or raise naming the key."""
    origin = typing.get_origin(tp)
    try:
        if origin is Literal:
            choices = typing.get_args(tp)
            if value not in choices:
                raise ValueError
            return value
        if tp is bool:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return text in ("true", "1", "yes")
        # int() and float() also read other scripts' digits ('١' is 1): numbers on the command line are ASCII.
        if tp in (int, float) and isinstance(value, str) and not value.isascii():
            raise ValueError
        if tp is int:
            if isinstance(value, float) or isinstance(value, bool):
                raise ValueError
            return int(value)
        if tp is float:
            number = float(value)
            if number != number or number in (float("inf"), float("-inf")):
                raise ValueError
            return number
        if tp is str:
            return str(value)
        if origin is tuple:
            items = json.loads(value) if isinstance(value, str) else value
            if not isinstance(items, (list, tuple)):
                raise ValueError
            args = typing.get_args(tp)
            inner = args[0]
            return tuple(coerce(key, item, inner) for item in items)
    except (TypeError, ValueError, json.JSONDecodeError):
        pass
    else:
        raise TypeError(f"recipe field {key!r} has an unsupported type {tp!r}")
    raise InvalidOverrideError(f"bad value for {key!r}: expected {describe_type(tp)}, got {value!r}")


def apply_overrides(recipe: Recipe, overrides: Mapping[str, Any]) -> Recipe:
    """A copy of `recipe` with `overrides` applied; unknown keys and bad values raise, listing the valid keys."""
    fields = recipe_fields(recipe)
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in fields:
            valid = ", ".join(f"{name} ({describe_type(tp)})" for name, tp in fields.items())
            raise InvalidOverrideError(f"unknown recipe key {key!r}; valid keys: {valid}")
        changes[key] = coerce(key, value, fields[key])
    return dataclasses.replace(recipe, **changes)


def parse_assignments(pairs: list[str]) -> dict[str, str]:
    """Parse `key=value` strings from the command line into a dict."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidOverrideError(f"malformed override {pair!r}: expected key=value, e.g. lr=0.1")
        parsed[key.strip()] = value.strip()
    return parsed


def recipe_from_dict(template: Recipe, values: Mapping[str, Any]) -> Recipe:
    """Rebuild a recipe of `template`'s class from its stored dict (as in a manifest).

    A field the dict lacks was added to the class after the version was made: it takes the field's own
    default (what training did before the field existed), not the named recipe's current value.
    """
    fields = recipe_fields(template)
    missing = {
        f.name: f.default
        for f in dataclasses.fields(template)
        if f.name not in values and f.default is not dataclasses.MISSING
    }
    return dataclasses.replace(template, **missing, **{k: coerce(k, v, fields[k]) for k, v in values.items()})
