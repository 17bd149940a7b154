"""Exporting a stored version to the files of FORMATS beside its weights, each verified before it is kept.

Each artifact takes the same raw input as the eager module (preprocessing is part of the graph), has a
dynamic batch dimension, and is compared with PyTorch eager on the spec's real example inputs before it
replaces anything. A lossy file (int8, float16) cannot match eager to 1e-5, so it is verified on the task: its
test-split score against the float32 ONNX file's, within a bound the manifest records.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from zoo.core.data import DataContext, Splits, resolve_data_dir
from zoo.core.errors import NotExportableError, VerificationError
from zoo.core.reference import ModelRef
from zoo.exports.formats import FORMATS, LOSSLESS_FORMATS, load_onnx
from zoo.exports.quantize import Calibration, draw_calibration
from zoo.exports.runtimes import exportable_model
from zoo.store.atomic import storage_errors, temp_beside
from zoo.store.loading import LoadedModel, load_stored
from zoo.store.manifest import ArtifactRecord, Manifest
from zoo.store.versions import WeightsLocation, WeightsStore, check_sha256, sha256_file

DEFAULT_FORMATS = ("onnx",)
TOLERANCE = 1e-5
# How far a lossy file may score below the float32 ONNX file it is made from, on the test split.
MAX_ACCURACY_DROP = 0.5  # points of accuracy, for a classifier
MAX_RELATIVE_ERROR = 0.01  # relative RMS difference of the outputs, for any other model
VERIFY_BATCHES = (1, 1000)
TEST_DATA_DIR, TEST_DATA_BATCH = "test_data_set_0", 4


# Files a layer above rewrites beside the export, published in the same commit: (the loaded version, its manifest as it
# will be, its data) -> {final path: new text}. zoo.publishing redraws the card's export table with it.
Rewrite = Callable[[LoadedModel, Manifest, DataContext], Mapping[Path, str]]


@dataclass(frozen=True)
class ExportResult:
    """What an export wrote: the version, its folder and the manifest entry of each format."""

    model: str
    version: int
    folder: Path
    artifacts: dict[str, ArtifactRecord]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, as `zoo export --json` prints it (the folder as a string)."""
        return {"model": self.model, "version": self.version, "folder": str(self.folder),
                "artifacts": copy.deepcopy(self.artifacts)}


def export(
    ref: ModelRef | str,
    formats: Sequence[str] = DEFAULT_FORMATS,
    *,
    data_dir: str | None = None,
    weights_dir: WeightsLocation = None,
    opset: int | None = None,
    verify: bool = True,
    max_accuracy_drop: float = MAX_ACCURACY_DROP,
    max_relative_error: float = MAX_RELATIVE_ERROR,
    rewrite: Rewrite | None = None,
) -> ExportResult:
    """Export `MODEL[:VERSION]` to each of `formats` (names in FORMATS, or all: every lossless one) beside its weights.

    A lossy format (onnx-int8, onnx-fp16) is made from the version's float32 ONNX file (exported to a temp file
    and not kept when the version has none and `formats` does not ask for it) and verified on the test split: a
    classifier's accuracy may fall at most `max_accuracy_drop` points below the float32 file's, a regression
    model's outputs may differ from the float32 file's by at most `max_relative_error` (relative RMS).
    Returns the folder and each format's manifest entry; nothing changes on disk unless every format exported
    and verified. `rewrite` names files to rewrite in the same commit (the card).
    """
    formats = _check_formats(formats)
    ref, store = ModelRef.of(ref), WeightsStore.at(weights_dir)
    name = exportable_model(ref.name).name
    loaded = load_stored(ref, store, "cpu")
    store.check_writable(name, loaded.version)
    folder = loaded.stored.path
    interface = loaded.spec.required_interface()
    context = DataContext(resolve_data_dir(data_dir), torch.device("cpu"))
    inputs = interface.examples(loaded.recipe, context, max(VERIFY_BATCHES)).float()
    with torch.inference_mode():
        expected = {batch: loaded.model(inputs[:batch]).numpy() for batch in VERIFY_BATCHES}
    task = _TaskData(loaded, context)
    bounds = {"max_accuracy_drop": max_accuracy_drop, "max_relative_error": max_relative_error}
    staged: dict[Path, Path] = {}  # temp file -> final path
    scratch: list[Path] = []  # temp files that are never published (a float32 file made only to derive from)
    with _removed_after(staged, scratch), storage_errors(f"write the export of {loaded.ref}", folder):
        entries: dict[str, ArtifactRecord] = {}
        written: dict[str, Path] = {}  # format -> its file as this export wrote it
        for fmt in formats:
            entries[fmt] = _export_one(fmt, loaded, opset, verify, inputs, expected, task, bounds, written, staged,
                                       scratch)
        _stage_test_data(loaded, inputs[:TEST_DATA_BATCH], expected[VERIFY_BATCHES[-1]][:TEST_DATA_BATCH], staged)
        if rewrite is not None:
            _stage_rewrites(loaded, context, entries, staged, rewrite)

        def record(manifest: Manifest) -> None:
            manifest.setdefault("artifacts", {}).update(entries)

        store.commit(name, loaded.version, staged, record)
    return ExportResult(name, loaded.version, folder, entries)


@contextlib.contextmanager
def _removed_after(staged: dict[Path, Path], scratch: list[Path]) -> Iterator[None]:
    """On leaving, remove the temp files still staged (those of an export that failed) and the scratch files."""
    try:
        yield
    finally:
        for temp in [*staged, *scratch]:
            temp.unlink(missing_ok=True)


def _export_one(fmt: str, loaded: LoadedModel, opset: int | None, verify: bool, inputs: torch.Tensor,
                expected: dict[int, np.ndarray], task: _TaskData, bounds: dict[str, float], written: dict[str, Path],
                staged: dict[Path, Path], scratch: list[Path]) -> ArtifactRecord:
    """Export (or derive) one format into a temp file added to `staged`, verify it, and return its manifest entry."""
    chosen, interface = FORMATS[fmt], loaded.spec.required_interface()
    final = loaded.stored.path / chosen.file
    temp = temp_beside(final)
    staged[temp] = final
    if chosen.derived_from is None:
        details = chosen.exporter()(loaded.model, interface, temp, opset)
    else:
        source = written.get(chosen.derived_from) or _source_file(
            loaded, chosen.derived_from, opset, verify, inputs, expected, scratch)
        written.setdefault(chosen.derived_from, source)
        calibration = task.calibration if chosen.calibrated else None
        details = {**chosen.converter()(source, temp, interface, calibration),
                   "derived_from": {"format": chosen.derived_from, "sha256": sha256_file(source),
                                    "bytes": source.stat().st_size,
                                    "size_ratio": round(temp.stat().st_size / source.stat().st_size, 4)}}
    written[fmt] = temp
    entry = _artifact_entry(loaded, final, temp, details)
    if verify and chosen.lossy and chosen.derived_from is not None:
        entry["verification"] = _verify_on_task(fmt, temp, written[chosen.derived_from], task, inputs, expected,
                                                bounds)
    elif verify:
        entry["verification"] = _verify(fmt, temp, inputs, expected)
    return entry


def _check_formats(formats: Sequence[str]) -> list[str]:
    """The formats asked for, without repeats, each derived one after the format it is made from."""
    chosen: list[str] = []
    expected = f"expected one or more of {', '.join(FORMATS)} or all (= {', '.join(LOSSLESS_FORMATS)})"
    for fmt in formats:
        if fmt not in (*FORMATS, "all"):
            raise NotExportableError(f"unknown export format {fmt!r}: {expected}")
        chosen += list(LOSSLESS_FORMATS) if fmt == "all" else [fmt]
    if not chosen:
        raise NotExportableError(f"no export format given: {expected}")
    chosen = list(dict.fromkeys(chosen))
    return sorted(chosen, key=lambda fmt: FORMATS[fmt].derived_from is not None)


class _TaskData:
    """The version's own data, loaded once and only when a lossy format needs it: its calibration inputs and
    the held-out split it is verified on."""

    def __init__(self, loaded: LoadedModel, context: DataContext) -> None:
        self.loaded, self.context = loaded, context

    @functools.cached_property
    def splits(self) -> Splits:
        return self.loaded.spec.supervised().load_data(self.loaded.recipe, self.context)

    @functools.cached_property
    def calibration(self) -> Calibration:
        splits = self.splits
        return draw_calibration(splits.train_x, self.loaded.recipe.seed, splits.description)


def _source_file(loaded: LoadedModel, fmt: str, opset: int | None, verify: bool, inputs: torch.Tensor,
                 expected: dict[int, np.ndarray], scratch: list[Path]) -> Path:
    """The float32 file a lossy format is made from: the version's own when it has one (sha256-checked, and of the
    opset asked for, if any), else a fresh export to a temp file that is verified against eager and never kept."""
    record = loaded.manifest.get("artifacts", {}).get(fmt)
    path = loaded.stored.path / FORMATS[fmt].file
    if record is not None and path.is_file() and opset in (None, record.get("opset")):
        check_sha256(path, record["sha256"])
        return path
    temp = temp_beside(path)
    scratch.append(temp)
    FORMATS[fmt].exporter()(loaded.model, loaded.spec.required_interface(), temp, opset)
    if verify:
        _verify(fmt, temp, inputs, expected)
    return temp


def _differences(fmt: str, predict: Any, inputs: torch.Tensor, expected: dict[int, np.ndarray]) -> dict[int, float]:
    """The largest absolute difference from eager at each verification batch; a wrong shape raises."""
    diffs = {}
    for batch, want in expected.items():
        got = predict(inputs[:batch].numpy())
        if got.shape != want.shape:
            raise VerificationError(
                f"{fmt} export gives shape {list(got.shape)} at batch {batch}: expected {list(want.shape)}"
            )
        diffs[batch] = float(np.abs(got - want).max())
    return diffs


def _verify(fmt: str, path: Path, inputs: torch.Tensor, expected: dict[int, np.ndarray]) -> dict[str, Any]:
    """Run the saved file at each verification batch and compare with eager; too far off raises."""
    diffs = _differences(fmt, FORMATS[fmt].load(path, None), inputs, expected)
    worst = max(diffs.values())
    if not worst < TOLERANCE:
        raise VerificationError(
            f"{fmt} export does not match PyTorch eager: max abs difference {worst:.3g}, expected under {TOLERANCE:g}; "
            "nothing was written"
        )
    return {
        "passed": True,
        "max_abs_diff": worst,
        "tolerance": TOLERANCE,
        "batches": list(diffs),
        "against": "PyTorch eager",
    }


def _torch_predictor(predict: Any) -> Any:
    """A numpy predictor as the objective's metrics call one: tensor in, tensor out."""
    return lambda x: torch.from_numpy(predict(np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32)))


def _verify_on_task(
    fmt: str,
    path: Path,
    source: Path,
    task: _TaskData,
    inputs: torch.Tensor,
    expected: dict[int, np.ndarray],
    bounds: dict[str, float],
) -> dict[str, Any]:
    """Score the lossy file and the float32 file it came from on the test split; a score beyond the bound raises.

    A classifier (its metrics have an accuracy) compares accuracy in points; any other model compares outputs:
    the relative RMS difference of its test-split outputs from the float32 file's.
    """
    lossy, reference = FORMATS[fmt].load(path, None), load_onnx(source)
    diffs = _differences(fmt, lossy, inputs, expected)
    spec, recipe, splits = task.loaded.spec, task.loaded.recipe, task.splits
    with torch.no_grad():
        metrics = spec.supervised().metrics(_torch_predictor(lossy), splits, recipe)
        float32_metrics = spec.supervised().metrics(_torch_predictor(reference), splits, recipe)
    result: dict[str, Any] = {
        "passed": True,
        "against": f"the float32 ONNX file ({FORMATS['onnx'].file}) on the test split",
        "metrics": metrics,
        "float32_metrics": float32_metrics,
        "max_abs_diff": max(diffs.values()),
        "batches": list(diffs),
        "max_abs_diff_against": "PyTorch eager",
    }
    if "accuracy" in float32_metrics:
        return _check_accuracy(fmt, result, metrics, float32_metrics, bounds["max_accuracy_drop"])
    return _check_outputs(fmt, result, lossy, reference, splits, bounds["max_relative_error"])


def _check_accuracy(fmt: str, result: dict[str, Any], metrics: dict[str, Any], float32_metrics: dict[str, Any],
                    bound: float) -> dict[str, Any]:
    """A classifier's lossy file may score at most `bound` points of accuracy below the float32 file."""
    drop = round(float32_metrics["accuracy"] - metrics["accuracy"], 4)
    result.update(
        measure="accuracy",
        accuracy=metrics["accuracy"],
        float32_accuracy=float32_metrics["accuracy"],
        accuracy_drop=drop,
        bound=f"accuracy at most {bound:g} points below float32's",
        max_accuracy_drop=bound,
    )
    if not drop <= bound:
        raise VerificationError(
            f"{fmt} export scores {metrics['accuracy']:.2f}% test accuracy, {drop:.2f} points below the float32 "
            f"ONNX file's {float32_metrics['accuracy']:.2f}%: expected at most {bound:g} points below; "
            "nothing was written"
        )
    return result


def _check_outputs(fmt: str, result: dict[str, Any], lossy: Any, reference: Any, splits: Splits,
                   bound: float) -> dict[str, Any]:
    """Any other model's lossy file may differ from the float32 file by at most `bound` relative RMS (test split)."""
    test_x = np.ascontiguousarray(splits.test_x.cpu().numpy(), dtype=np.float32)
    want, got = reference(test_x), lossy(test_x)
    error = float(np.sqrt(np.mean((got - want) ** 2)) / max(float(np.sqrt(np.mean(want**2))), 1e-12))
    result.update(
        measure="relative error",
        relative_error=round(error, 8),
        bound=f"test-split outputs within {bound:g} relative RMS of float32's",
        max_relative_error=bound,
    )
    if not error <= bound:
        raise VerificationError(
            f"{fmt} export's test-split outputs differ from the float32 ONNX file's by {error:.3g} (relative RMS): "
            f"expected at most {bound:g}; nothing was written"
        )
    return result


def _stage_rewrites(loaded: LoadedModel, context: DataContext, entries: dict[str, ArtifactRecord],
                    staged: dict[Path, Path], rewrite: Rewrite) -> None:
    """The files `rewrite` names, written from the manifest as it will be into temp files added to `staged`."""
    manifest = copy.deepcopy(loaded.manifest)
    manifest.setdefault("artifacts", {}).update(copy.deepcopy(entries))
    for final, text in rewrite(loaded, manifest, context).items():
        temp = temp_beside(final)
        staged[temp] = final
        temp.write_text(text, encoding="utf-8")


def _artifact_entry(loaded: LoadedModel, final: Path, temp: Path, details: dict[str, Any]) -> ArtifactRecord:
    spec, interface = loaded.spec, loaded.spec.required_interface()
    entry: dict[str, Any] = {
        "file": final.name,
        "sha256": sha256_file(temp),
        "bytes": temp.stat().st_size,
        **details,
        "inputs": [interface.input.to_dict()],
        "outputs": [interface.output.to_dict()],
        "batch": "dynamic (dimension N)",
        "preprocessing": spec.preprocessing,
        "test_data": f"{TEST_DATA_DIR}/input_0.pb -> output_0.pb (onnx TensorProto, PyTorch eager outputs)",
        "verification": None,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return cast(ArtifactRecord, entry)  # `details` holds the format's own keys of the record


def _stage_test_data(loaded: LoadedModel, inputs: torch.Tensor, outputs: np.ndarray, staged: dict[Path, Path]) -> None:
    """An input/output pair as the ONNX model zoo stores it, in temp files added to `staged` for the caller to
    move in."""
    from onnx import numpy_helper

    folder, interface = loaded.stored.path, loaded.spec.required_interface()
    for stem, tensor, array in (("input_0", interface.input, inputs.numpy()), ("output_0", interface.output, outputs)):
        temp = temp_beside(folder / f"{stem}.pb")
        staged[temp] = folder / TEST_DATA_DIR / f"{stem}.pb"
        proto = numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), tensor.name)
        temp.write_bytes(proto.SerializeToString())

