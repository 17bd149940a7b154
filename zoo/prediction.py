"""Predictions on a user's own inputs: files, folders, globs, stdin or plain numbers, answered in batches.

Each input is read into the model's batch by `zoo.inputs.preprocessing.preprocess`, the function behind
`LoadedModel.preprocess` and the server's readers (PNG/JPEG through zoo.inputs.imaging's image_to_batch, pixel
arrays through pixels_to_batch, numbers through value_inputs), so a file classifies here as it does over HTTP.
Answers come from zoo.exports.inference, as the server's do. An input that cannot be read is one Prediction with
its error; the others go on.
"""

from __future__ import annotations

import functools
import glob
import io
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from zoo.core.errors import InvalidInputError, ZooError
from zoo.core.reference import ModelRef
from zoo.core.registry import get_model
from zoo.core.spec import InputForm, ModelSpec
from zoo.exports.inference import classify_digits, predict_values
from zoo.exports.runtimes import Runtime, check_backend, exportable_model, open_stored
from zoo.inputs.preprocessing import preprocess
from zoo.store.versions import WeightsLocation, WeightsStore

# The backend that picks per version: ONNX Runtime where the version has an ONNX export, else PyTorch.
AUTO = "auto"
FASTEST = "onnx"
STDIN = "-"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
ARRAY_SUFFIXES = (".npy", ".json")
DEFAULT_BATCH = 256
GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class Source:
    """One input as named on the command line (or found in a folder): its label and how to read it."""

    label: str
    read: Callable[[], Any] = field(repr=False)  # -> what preprocess takes (image bytes, pixels or numbers)


@dataclass(frozen=True)
class Prediction:
    """The answer for one input (one image, or one row of an array file), or why it could not be read."""

    input: str
    answer: Any = None  # a digit classifier's class index; a values model's output (a float, or a list)
    probabilities: list[float] | None = None  # per class, for classifiers
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def probability(self) -> float | None:
        """The probability of the answer, for classifiers."""
        return self.probabilities[self.answer] if self.probabilities is not None else None

    def top(self, k: int) -> list[tuple[int, float]]:
        """The k most probable classes with their probabilities, most probable first (empty for values models)."""
        probabilities = self.probabilities
        if probabilities is None:
            return []
        order = sorted(range(len(probabilities)), key=lambda i: -probabilities[i])
        return [(i, probabilities[i]) for i in order[:k]]

    def to_dict(self, spec: ModelSpec, top_k: int = 1) -> dict[str, Any]:
        """As the server answers: {"input", "digit", "probability", "probabilities", "top_k"} for digit models,
        {"input", <output name>} for values models, {"input", "error"} for an input that could not be read."""
        if not self.ok:
            return {"input": self.input, "error": self.error}
        if self.probabilities is None:
            return {"input": self.input, spec.required_interface().output.name: self.answer}
        return {"input": self.input, "digit": self.answer, "probability": self.probability,
                "probabilities": self.probabilities,
                "top_k": [{"digit": digit, "probability": p} for digit, p in self.top(top_k)]}


def resolve_backend(name: str, version: int, backend: str, store: WeightsStore) -> str:
    """`backend` itself, or for "auto" onnx when the version has an ONNX export and torch when it has none."""
    if backend != AUTO:
        return check_backend(backend)
    artifacts = store.manifest(name, version).get("artifacts", {})
    return FASTEST if FASTEST in artifacts else "torch"


def gather_inputs(items: Sequence[str], spec: ModelSpec, stdin: io.BufferedIOBase | None = None) -> list[Source]:
    """The inputs named by `items`, in order: files, folders (recursively, sorted), globs, "-" for `stdin`, and
    for values models plain numbers ("3.5", or "1,2,3" for a model of three features). A name that is none
    of these is a Source whose read raises, so it is reported in its place."""
    sources: list[Source] = []
    for item in items:
        if item == STDIN:
            sources.append(Source(STDIN, lambda: _read_stdin(stdin, spec)))
            continue
        number = _numbers(item, spec)
        if number is not None and not os.path.exists(item):
            sources.append(Source(item, functools.partial(_given, number)))
            continue
        paths = [item]
        if not os.path.exists(item) and GLOB_CHARACTERS & set(item):
            paths = sorted(glob.glob(item, recursive=True))
            if not paths:
                sources.append(_failing(item, f"no file matches {item!r}"))
                continue
        for path in paths:
            if os.path.isdir(path):
                found = _walk(Path(path), spec)
                sources += [Source(str(file), functools.partial(_read_file, file, spec)) for file in found]
            elif os.path.isfile(path):
                sources.append(Source(path, functools.partial(_read_file, Path(path), spec)))
            else:
                digits = spec.required_interface().form is InputForm.DIGITS
                what = "file or folder" if digits else "number, file or folder"
                sources.append(_failing(path, f"expected a {what}, got a name that is none of these"))
    return sources


def _failing(label: str, message: str) -> Source:
    def read() -> Any:
        raise InvalidInputError(message)

    return Source(label, read)


def _suffixes(spec: ModelSpec) -> tuple[str, ...]:
    return (*IMAGE_SUFFIXES, *ARRAY_SUFFIXES) if spec.required_interface().form is InputForm.DIGITS else ARRAY_SUFFIXES


def _walk(folder: Path, spec: ModelSpec) -> list[Path]:
    """The files under `folder` that the model can read, in sorted order (hidden entries skipped)."""
    wanted = _suffixes(spec)
    found: list[Path] = []
    for root, folders, files in os.walk(folder):
        folders[:] = sorted(f for f in folders if not f.startswith("."))
        found += [Path(root) / f for f in sorted(files) if not f.startswith(".") and f.lower().endswith(wanted)]
    return found


def _numbers(text: str, spec: ModelSpec) -> list[float] | None:
    """`text` as one item of numbers for a values model ("3.5", "1,2,3"), else None."""
    if spec.required_interface().form is not InputForm.VALUES:
        return None
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        return None
    return values if all(math.isfinite(v) for v in values) else None


def _given(value: Any) -> Any:
    """A number named on the command line, read as it came."""
    return value


def _read_file(path: Path, spec: ModelSpec) -> Any:
    try:
        suffix = path.suffix.lower()
        if suffix == ".npy":
            return _load_npy(path.read_bytes())
        if suffix == ".json":
            return _from_json(path.read_bytes(), spec)
        return path.read_bytes()
    except OSError as error:  # reading the caller's input, not writing: a file it named that cannot be read
        raise InvalidInputError(f"could not read the file: {error.strerror or error}") from None


def _read_stdin(stdin: io.BufferedIOBase | None, spec: ModelSpec) -> Any:
    data = stdin.read() if stdin is not None else b""
    if not data.strip():
        raise InvalidInputError("expected an image, an .npy array, JSON or numbers on standard input, got nothing")
    if data.startswith(b"\x93NUMPY"):
        return _load_npy(data)
    if spec.required_interface().form is InputForm.VALUES or data.lstrip()[:1] in (b"[", b"{"):
        try:
            return _from_json(data, spec)
        except InvalidInputError:
            if spec.required_interface().form is InputForm.DIGITS:
                raise
        try:  # plain numbers: "0 10 100", one per line, or comma-separated
            return [float(part) for part in data.decode().replace(",", " ").split()]
        except (UnicodeDecodeError, ValueError):
            raise InvalidInputError("expected numbers (JSON, or separated by spaces, commas or new lines) on "
                                    f"standard input, got {data[:40]!r}") from None
    return data  # an image: preprocess says so if it is not one


def _load_npy(data: bytes) -> np.ndarray:
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise InvalidInputError(f"expected a numpy .npy array of numbers, got an unreadable one ({error})") from None


def _from_json(data: bytes, spec: ModelSpec) -> Any:
    """A JSON file's values: the server's request body ({"pixels": ...} or {"x": ...}) or the bare array."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise InvalidInputError(f"expected JSON, got invalid JSON ({str(error)[:200]})") from None
    key = "pixels" if spec.required_interface().form is InputForm.DIGITS else spec.required_interface().input.name
    if isinstance(document, dict):
        if set(document) != {key}:
            raise InvalidInputError(f"expected a JSON object with only the key {key!r} (or a bare array), "
                                    f"got keys {sorted(document)}")
        return document[key]
    return document


def _rows(item: Any, spec: ModelSpec) -> np.ndarray:
    """An input as rows of the model's batch: the shared preprocessing, numbers as the server takes them."""
    if isinstance(item, np.ndarray):
        if item.dtype.kind not in "fiub":
            raise InvalidInputError(f"expected an array of numbers, got dtype {item.dtype}")
        item = item.tolist()
    return preprocess(spec, item)


@dataclass
class PredictionRun:
    """An opened runtime and the inputs to run it on; iterate for one Prediction per image or row, in order."""

    runtime: Runtime
    sources: list[Source]
    batch_size: int = DEFAULT_BATCH
    on_input: Callable[[int], None] | None = None  # called with the number of inputs read so far

    @property
    def spec(self) -> ModelSpec:
        return self.runtime.spec

    def __iter__(self) -> Iterator[Prediction]:
        pending: list[tuple[str, np.ndarray | None, str | None]] = []  # in order; errors hold their place
        rows = 0
        for done, source in enumerate(self.sources, 1):
            try:
                batch = _rows(source.read(), self.spec)
            except ZooError as error:
                pending.append((source.label, None, str(error)))
            else:
                labels = [source.label] if len(batch) == 1 else [f"{source.label}[{i}]" for i in range(len(batch))]
                pending += [(label, batch[i:i + 1], None) for i, label in enumerate(labels)]
                rows += len(batch)
            if self.on_input is not None:
                self.on_input(done)
            if rows >= self.batch_size:
                yield from self._answer(pending)
                pending, rows = [], 0
        yield from self._answer(pending)

    def _answer(self, pending: list[tuple[str, np.ndarray | None, str | None]]) -> Iterator[Prediction]:
        arrays = [row for _, row, _ in pending if row is not None]
        answers: list[Any] = []
        if arrays:
            batch = np.concatenate(arrays)
            if self.spec.required_interface().form is InputForm.DIGITS:
                answers = [(a["digit"], a["probabilities"]) for a in classify_digits(self.runtime, batch)]
            else:
                answers = [(value, None) for value in predict_values(self.runtime, batch)]
        answered = iter(answers)
        for label, row, error in pending:
            if row is None:
                yield Prediction(label, error=error)
            else:
                answer, probabilities = next(answered)
                yield Prediction(label, answer, probabilities)


def predict(ref: ModelRef | str, items: Sequence[str], *, weights_dir: WeightsLocation = None, device: str = "cpu",
            backend: str = AUTO, batch_size: int = DEFAULT_BATCH, stdin: io.BufferedIOBase | None = None,
            on_input: Callable[[int], None] | None = None) -> PredictionRun:
    """Open `MODEL[:VERSION]` on `backend` ("auto": onnx where exported, else torch) and gather `items`;
    iterating the result reads, preprocesses and answers them `batch_size` at a time.

    The version, backend or model being wrong raises at once (the caller's mistake); an input that cannot be
    read becomes a Prediction with its error, in its place among the others.
    """
    if batch_size < 1:
        raise InvalidInputError(f"expected batch_size of at least 1, got {batch_size}")
    if not items:
        raise InvalidInputError("expected at least one input: a file, folder, glob, '-' or a number")
    ref, store = ModelRef.of(ref), WeightsStore.at(weights_dir)
    exportable_model(ref.name)
    version = store.resolve(ref.name, ref.version)
    chosen = resolve_backend(ref.name, version, backend, store)
    runtime = open_stored(ref.at(version), store, chosen, device)
    return PredictionRun(runtime, gather_inputs(items, get_model(ref.name), stdin), batch_size, on_input)
