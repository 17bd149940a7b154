"""Exporting a stored version to the files of FORMATS beside its weights, each verified before it is kept.

Each artifact takes the same raw input as the eager module (preprocessing is part of the graph), has a
dynamic batch dimension, and is compared with PyTorch eager on the spec's real example inputs before it
replaces anything.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from zoo.data import DataContext, resolve_data_dir
from zoo.errors import NotExportableError, StorageError, VerificationError, ZooError
from zoo.formats import FORMATS
from zoo.loading import LoadedModel, load_version
from zoo.files import publish_mode
from zoo.manifest import ArtifactRecord, Manifest
from zoo.runtimes import exportable_model
from zoo.store import WeightsStore, parse_ref, sha256_file

DEFAULT_FORMATS = ("onnx",)
TOLERANCE = 1e-5
VERIFY_BATCHES = (1, 1000)
TEST_DATA_DIR, TEST_DATA_BATCH = "test_data_set_0", 4


def export(
    ref: str,
    formats: Sequence[str] = DEFAULT_FORMATS,
    opset: Optional[int] = None,
    verify: bool = True,
    weights_dir: Optional[str] = None,
    data_dir: Optional[str] = None,
) -> dict[str, Any]:
    """Export `MODEL[:VERSION]` to each of `formats` (names in FORMATS, or all) beside its weights.

    Returns {"model", "version", "folder", "artifacts": {format: manifest entry}}; nothing changes on disk
    unless every format exported and verified.
    """
    formats = _check_formats(formats)
    name, _ = parse_ref(ref)
    exportable_model(name)
    loaded = load_version(ref, weights_dir, "cpu")
    store = WeightsStore(weights_dir)
    store.check_writable(name, loaded.version)
    folder = loaded.stored.path
    interface = loaded.spec.interface
    context = DataContext(resolve_data_dir(data_dir), torch.device("cpu"))
    inputs = interface.examples(loaded.recipe, context, max(VERIFY_BATCHES)).float()
    with torch.inference_mode():
        expected = {batch: loaded.model(inputs[:batch]).numpy() for batch in VERIFY_BATCHES}
    staged: dict[Path, Path] = {}  # temp file -> final path
    try:
        entries: dict[str, ArtifactRecord] = {}
        for fmt in formats:
            final = folder / FORMATS[fmt].file
            temp = _temp_beside(final)
            staged[temp] = final
            details = FORMATS[fmt].export(loaded.model, interface, temp, opset)
            entries[fmt] = _artifact_entry(loaded, final, temp, details)
            if verify:
                entries[fmt]["verification"] = _verify(fmt, temp, inputs, expected)
        _stage_test_data(loaded, inputs[:TEST_DATA_BATCH], expected[VERIFY_BATCHES[-1]][:TEST_DATA_BATCH], staged)

        def record(manifest: Manifest) -> None:
            manifest.setdefault("artifacts", {}).update(entries)

        store.commit(name, loaded.version, staged, record)
    except OSError as error:
        if isinstance(error, ZooError):
            raise
        where = getattr(error, "filename", None) or folder
        raise StorageError(f"could not write the export of {name}:{loaded.version} in {where}: "
                           f"{error.strerror or error}") from None
    finally:
        for temp in staged:
            temp.unlink(missing_ok=True)
    return {"model": name, "version": loaded.version, "folder": str(folder), "artifacts": entries}


def _check_formats(formats: Sequence[str]) -> list[str]:
    chosen: list[str] = []
    for fmt in formats:
        if fmt not in (*FORMATS, "all"):
            raise NotExportableError(f"unknown export format {fmt!r}: expected one of {', '.join(FORMATS)} or all")
        chosen += list(FORMATS) if fmt == "all" else [fmt]
    if not chosen:
        raise NotExportableError(f"no export format given: expected one or more of {', '.join(FORMATS)} or all")
    return list(dict.fromkeys(chosen))


def _verify(fmt: str, path: Path, inputs: torch.Tensor, expected: dict[int, np.ndarray]) -> dict[str, Any]:
    """Run the saved file at each verification batch and compare with eager; too far off raises."""
    predict = FORMATS[fmt].load(path, None)
    diffs = {}
    for batch, want in expected.items():
        got = predict(inputs[:batch].numpy())
        if got.shape != want.shape:
            raise VerificationError(f"{fmt} export gives shape {list(got.shape)} at batch {batch}: expected {list(want.shape)}")
        diffs[batch] = float(np.abs(got - want).max())
    worst = max(diffs.values())
    if not worst < TOLERANCE:
        raise VerificationError(
            f"{fmt} export does not match PyTorch eager: max abs difference {worst:.3g}, expected under {TOLERANCE:g}; "
            "nothing was written"
        )
    return {"passed": True, "max_abs_diff": worst, "tolerance": TOLERANCE, "batches": list(diffs),
            "against": "PyTorch eager"}


def _artifact_entry(loaded: LoadedModel, final: Path, temp: Path, details: dict[str, Any]) -> ArtifactRecord:
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
