"""Exporting a stored version to ONNX, TorchScript and torch.export files beside its weights, verified.

Each artifact takes the same raw input as the eager module (preprocessing is part of the graph), has a
dynamic batch dimension, and is compared with PyTorch eager on real inputs before it replaces anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn

from zoo.data import mnist_test_images, resolve_data_dir
from zoo.errors import ExportError
from zoo.loading import LoadedModel, load_version
from zoo.runtimes import ARTIFACT_FILES, ARTIFACT_LOADERS, exportable_model, quiet_torchscript
from zoo.spec import DataContext
from zoo.store import WeightsStore, parse_ref, publish_mode, sha256_file

FORMATS = tuple(ARTIFACT_FILES)
TOLERANCE = 1e-5
# A batch of 1 would let the exporters specialise the batch dimension to 1, so they trace a batch of 2.
EXAMPLE_BATCH = 2
VERIFY_BATCHES = (1, 1000)
TEST_DATA_DIR, TEST_DATA_BATCH = "test_data_set_0", 4


def export(
    ref: str,
    formats: Sequence[str],
    opset: Optional[int] = None,
    verify: bool = True,
    weights_dir: Optional[str] = None,
    data_dir: Optional[str] = None,
) -> dict[str, Any]:
    """Export `MODEL[:VERSION]` to each of `formats` (onnx, torchscript, pt2, or all) beside its weights.

    Returns {"model", "version", "folder", "artifacts": {format: manifest entry}}; nothing changes on disk
    unless every format exported and verified.
    """
    formats = _check_formats(formats)
    name, _ = parse_ref(ref)
    exportable_model(name)
    loaded = load_version(ref, weights_dir, "cpu")
    folder = loaded.stored.path
    inputs = verification_inputs(loaded, data_dir)
    with torch.inference_mode():
        expected = {batch: loaded.model(inputs[:batch]).numpy() for batch in VERIFY_BATCHES}
    staged: dict[Path, Path] = {}  # temp file -> final path
    try:
        entries = {}
        for fmt in formats:
            final = folder / ARTIFACT_FILES[fmt]
            temp = _temp_beside(final)
            staged[temp] = final
            details = EXPORTERS[fmt](loaded.model, loaded, temp, opset)
            entries[fmt] = _artifact_entry(loaded, final, temp, details)
            if verify:
                entries[fmt]["verification"] = _verify(fmt, temp, inputs, expected)
        _stage_test_data(loaded, inputs[:TEST_DATA_BATCH], expected[VERIFY_BATCHES[-1]][:TEST_DATA_BATCH], staged)
        for temp, final in staged.items():
            final.parent.mkdir(exist_ok=True)
            os.replace(temp, final)
        staged.clear()
    finally:
        for temp in staged:
            temp.unlink(missing_ok=True)

    def record(manifest: dict[str, Any]) -> None:
        manifest.setdefault("artifacts", {}).update(entries)

    WeightsStore(weights_dir).update_manifest(name, loaded.version, record)
    return {"model": name, "version": loaded.version, "folder": str(folder), "artifacts": entries}


def _check_formats(formats: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for fmt in formats:
        if fmt not in (*FORMATS, "all"):
            raise ExportError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)} or all")
        chosen += FORMATS if fmt == "all" else [fmt]
    if not chosen:
        raise ExportError(f"no export format given: expected one or more of {', '.join(FORMATS)} or all")
    return list(dict.fromkeys(chosen))


def verification_inputs(loaded: LoadedModel, data_dir: Optional[str] = None) -> torch.Tensor:
    """Real inputs for the largest verification batch: MNIST test images, a grid over the held-out x range
    for one-feature regressions, else seeded N(0, 1) draws."""
    spec, count = loaded.spec, max(VERIFY_BATCHES)
    if spec.dataset == "MNIST":
        return mnist_test_images(resolve_data_dir(data_dir), count)[0]
    features = tuple(spec.input.shape[1:])
    if features == (1,):
        held_out = spec.load_data(loaded.recipe, DataContext(resolve_data_dir(data_dir), torch.device("cpu"))).test_x
        return torch.linspace(float(held_out.min()), float(held_out.max()), count).unsqueeze(1)
    return torch.randn(count, *features, generator=torch.Generator().manual_seed(0))


def _example(loaded: LoadedModel) -> tuple[torch.Tensor]:
    return (torch.rand(EXAMPLE_BATCH, *loaded.spec.input.shape[1:]),)


def _dynamic_batch() -> tuple[dict[int, Any]]:
    return ({0: torch.export.Dim("N", min=1)},)


def export_onnx(model: nn.Module, loaded: LoadedModel, path: Path, opset: Optional[int]) -> dict[str, Any]:
    """torch.onnx.export through the dynamo exporter, as one self-contained file, then onnx.checker in full."""
    import onnx

    # The exporter reports progress and diagnostics on stdout/stderr; a CLI run should show none of it.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        program = torch.onnx.export(
            model, _example(loaded), dynamo=True, dynamic_shapes=_dynamic_batch(), opset_version=opset,
            input_names=[loaded.spec.input.name], output_names=[loaded.spec.output.name],
            external_data=False, verbose=False,
        )
        program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise ExportError(f"onnx.checker rejected the exported {loaded.spec.name}: {error}") from None
    used = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}, onnx {onnx.__version__}",
            "opset": used}


def export_torchscript(model: nn.Module, loaded: LoadedModel, path: Path, opset: Optional[int]) -> dict[str, Any]:
    """torch.jit.trace (the models have no data-dependent control flow) and torch.jit.save."""
    with quiet_torchscript():
        traced = torch.jit.trace(model, _example(loaded))
        torch.jit.save(traced, str(path))
    return {"exporter": f"torch.jit.trace, torch {torch.__version__} (TorchScript is deprecated: prefer pt2)",
            "opset": None}


def export_pt2(model: nn.Module, loaded: LoadedModel, path: Path, opset: Optional[int]) -> dict[str, Any]:
    """torch.export.export with a dynamic batch, saved by torch.export.save."""
    program = torch.export.export(model, _example(loaded), dynamic_shapes=_dynamic_batch())
    torch.export.save(program, str(path))
    return {"exporter": f"torch.export.export, torch {torch.__version__}", "opset": None}


EXPORTERS: dict[str, Callable[[nn.Module, LoadedModel, Path, Optional[int]], dict[str, Any]]] = {
    "onnx": export_onnx,
    "torchscript": export_torchscript,
    "pt2": export_pt2,
}


def _verify(fmt: str, path: Path, inputs: torch.Tensor, expected: dict[int, np.ndarray]) -> dict[str, Any]:
    """Run the saved file at each verification batch and compare with eager; too far off raises."""
    predict = ARTIFACT_LOADERS[fmt](path)
    diffs = {}
    for batch, want in expected.items():
        got = predict(inputs[:batch].numpy())
        if got.shape != want.shape:
            raise ExportError(f"{fmt} export gives shape {list(got.shape)} at batch {batch}: expected {list(want.shape)}")
        diffs[batch] = float(np.abs(got - want).max())
    worst = max(diffs.values())
    if not worst < TOLERANCE:
        raise ExportError(
            f"{fmt} export does not match PyTorch eager: max abs difference {worst:.3g}, expected under {TOLERANCE:g}; "
            "nothing was written"
        )
    return {"passed": True, "max_abs_diff": worst, "tolerance": TOLERANCE, "batches": list(diffs),
            "against": "PyTorch eager"}


def _artifact_entry(loaded: LoadedModel, final: Path, temp: Path, details: dict[str, Any]) -> dict[str, Any]:
    spec = loaded.spec
    return {
        "file": final.name,
        "sha256": sha256_file(temp),
        "bytes": temp.stat().st_size,
        **details,
        "inputs": [spec.input.to_dict()],
        "outputs": [spec.output.to_dict()],
        "batch": "dynamic (dimension N)",
        "preprocessing": spec.preprocessing,
        "test_data": f"{TEST_DATA_DIR}/input_0.pb -> output_0.pb (onnx TensorProto, PyTorch eager outputs)",
        "verification": None,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


def _stage_test_data(loaded: LoadedModel, inputs: torch.Tensor, outputs: np.ndarray, staged: dict[Path, Path]) -> None:
    """An input/output pair as the ONNX model zoo stores it, in temp files added to `staged` for the caller to move in."""
    from onnx import numpy_helper

    folder, spec = loaded.stored.path, loaded.spec
    for stem, tensor, array in (("input_0", spec.input, inputs.numpy()), ("output_0", spec.output, outputs)):
        temp = _temp_beside(folder / f"{stem}.pb")
        staged[temp] = folder / TEST_DATA_DIR / f"{stem}.pb"
        proto = numpy_helper.from_array(np.ascontiguousarray(array, dtype=np.float32), tensor.name)
        temp.write_bytes(proto.SerializeToString())


def _temp_beside(final: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.stem}.", suffix=f".tmp{final.suffix}")
    os.close(fd)
    publish_mode(Path(name))
    return Path(name)
