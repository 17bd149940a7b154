"""The manifest of a stored version: one typed structure, read, written and summarised here alone.

`manifest.json` records how a version was made (recipe, data, device, library versions), what it scored,
the sha256 of its weights and of every exported artifact. A hand-edited or corrupt file is an IntegrityError
that names the file and what is wrong with it, never a traceback.

Every file a manifest names (its weights, card, figures and artifacts) is a plain name inside the version's folder:
`read_manifest` refuses any other, and `version_file` is the one way to join a name onto a version folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, TypedDict

from zoo.core.errors import IntegrityError
from zoo.store.atomic import replace, stage_beside, storage_errors

MANIFEST_FILE = "manifest.json"


class RecipeRecord(TypedDict):
    name: str
    params: dict[str, Any]


class WeightsRecord(TypedDict):
    file: str
    sha256: str
    bytes: int


class DataRecord(TypedDict):
    fingerprint: str
    description: str


class DistributedRecord(TypedDict):
    """How many processes trained a version: the world size, the collective backend (None for one process),
    the global batch and each rank's part of it."""

    world_size: int
    backend: str | None
    global_batch: int
    per_rank_batch: list[int]


class ArtifactRecord(TypedDict, total=False):
    file: str
    sha256: str
    bytes: int
    exporter: str
    opset: int | None
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    batch: str
    preprocessing: str
    test_data: str
    verification: dict[str, Any] | None
    created: str


class CardRecord(TypedDict):
    """The model card drawn for a version: its file, the figures drawn, those that failed and the drawing time."""

    file: str | None
    figures: list[str]
    failures: list[str]
    drawing_seconds: float


class ParentRecord(TypedDict):
    """The version a fine-tuned version started from: its reference, its weights' sha256 and its recipe's name."""

    ref: str
    sha256: str
    recipe: str | None


class Manifest(TypedDict, total=False):
    """A version's manifest; `model`, `version` and `weights` are always there, the rest once trained."""

    model: str
    version: int
    recipe: RecipeRecord
    seed: int
    metrics: dict[str, Any]
    loss_history: list[float]
    parameters: int
    data: DataRecord
    device: str
    distributed: DistributedRecord
    precision: str  # the recipe's arithmetic in training (fp32, bf16, fp16); the weights are float32 whatever it is
    torch: str
    torchvision: str
    python: str
    created: str
    training_seconds: float
    artifacts: dict[str, ArtifactRecord]
    weights: WeightsRecord
    card: CardRecord
    parent: ParentRecord  # only in a fine-tuned version


# Keys whose value must have this type when present; the first three must be present.
_REQUIRED = ("model", "version", "weights")
_TYPES: dict[str, type] = {"model": str, "version": int, "weights": dict, "recipe": dict, "metrics": dict,
                           "artifacts": dict, "loss_history": list, "data": dict, "card": dict}
_NESTED = {"weights": ("file", "sha256"), "recipe": ("name", "params")}


def read_manifest(path: Path) -> Manifest:
    """The manifest at `path`, checked for the keys every reader relies on."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except json.JSONDecodeError as error:
        raise IntegrityError(f"{path} is not valid JSON ({error}); restore it or remove the version folder") from None
    except UnicodeDecodeError:
        raise IntegrityError(f"{path} is not a UTF-8 JSON file; restore it or remove the version folder") from None
    if not isinstance(data, dict):
        raise IntegrityError(f"{path} must hold a JSON object, got {type(data).__name__}")
    for key in _REQUIRED:
        if key not in data:
            raise IntegrityError(f"{path} has no {key!r} key; expected a manifest with {', '.join(_REQUIRED)}")
    for key, kind in _TYPES.items():
        if key in data and not isinstance(data[key], kind):
            raise IntegrityError(f"{path}: {key!r} must be a JSON {kind.__name__}, got {type(data[key]).__name__}")
    for key, inner in _NESTED.items():
        missing = [k for k in inner if key in data and k not in data[key]]
        if missing:
            raise IntegrityError(f"{path}: {key!r} has no {missing[0]!r} key")
    _check_file_names(path, data)
    return data  # type: ignore[return-value]


def plain_file_name(manifest_path: Path, key: str, value: Any) -> str:
    """`value` if it is a plain file name (no folder, no `..`, not absolute), else IntegrityError naming the manifest,
    the key and the value: a manifest names files inside its own version folder only."""
    if (not isinstance(value, str) or value in ("", ".", "..") or "/" in value or "\\" in value or "\0" in value
            or os.sep in value or (os.altsep and os.altsep in value) or Path(value).is_absolute()):
        raise IntegrityError(f"{manifest_path}: {key} must be a plain file name inside the version folder (no path "
                             f"separators, no '..', not absolute), got {value!r}")
    return value


def _check_file_names(path: Path, data: dict[str, Any]) -> None:
    """Every file name the manifest gives is a plain name (plain_file_name), or IntegrityError."""
    plain_file_name(path, "weights.file", data["weights"]["file"])
    card = data.get("card")
    if card is not None:
        if card.get("file") is not None:
            plain_file_name(path, "card.file", card["file"])
        figures = card.get("figures", [])
        if not isinstance(figures, list):
            raise IntegrityError(f"{path}: 'card.figures' must be a JSON list of file names, "
                                 f"got {type(figures).__name__}")
        for index, figure in enumerate(figures):
            plain_file_name(path, f"card.figures[{index}]", figure)
    for backend, record in data.get("artifacts", {}).items():
        if not isinstance(record, dict):
            raise IntegrityError(f"{path}: 'artifacts.{backend}' must be a JSON object, got {type(record).__name__}")
        if "file" in record:
            plain_file_name(path, f"artifacts.{backend}.file", record["file"])


def version_file(folder: Path, name: str, key: str = "file") -> Path:
    """The path of file `name` in version folder `folder`: a plain name (plain_file_name) that, through any symlink,
    stays inside the folder; anything else is an IntegrityError naming the folder's manifest and the value."""
    manifest_path = folder / MANIFEST_FILE
    path = folder / plain_file_name(manifest_path, key, name)
    if path.is_symlink():
        target, inside = path.resolve(), folder.resolve()
        if target == inside or not target.is_relative_to(inside):
            raise IntegrityError(f"{manifest_path}: {key} {name!r} is a symlink to {target}, outside the version "
                                 "folder; a version's files must be inside its folder")
    return path


def stage_manifest(path: Path, manifest: Manifest) -> Path:
    """Write the manifest to a temp file beside `path` and return it; the caller renames it over `path`."""
    text = json.dumps(manifest, indent=2, sort_keys=False) + "\n"
    with storage_errors(f"write {path}"):
        return stage_beside(path, lambda handle: handle.write(text.encode()))


def write_manifest(path: Path, manifest: Manifest) -> None:
    """Write the manifest beside `path` and rename it over, so a reader never sees half a file."""
    with storage_errors(f"write {path}"):
        replace(stage_manifest(path, manifest), path)


def sampled_steps(length: int, points: int = 100) -> list[int]:
    """The indices `loss_history` keeps of a history of `length` entries: all of them, or `points` evenly spaced and
    the last, so a reader can place each recorded loss at its epoch or step."""
    if length <= points:
        return list(range(length))
    stride = length / points
    return [int(i * stride) for i in range(points)] + [length - 1]


def version_summary(manifest: Manifest) -> dict[str, Any]:
    """The one-line view of a version that `zoo list`, `zoo info` and /v1/models show."""
    return {
        "version": manifest["version"],
        "recipe": manifest.get("recipe", {}).get("name"),
        "metrics": manifest.get("metrics", {}),
        "created": manifest.get("created"),
        "artifacts": sorted(manifest.get("artifacts", {})),
    }
