"""Export verification (zoo/exports/exporter.py) at its source: the comparison with eager, the lossy files' bounds
and the choice of formats, each rule and message pinned, on one real ONNX file of linear-regression.

tests/test_export.py and tests/test_lowprec.py plant wrong exports through zoo.export; these call the verifier's own
functions, so that benchmarks/mutation.sh can run them once per mutant in seconds.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import cached
from onnx import load_tensor, numpy_helper

import zoo
from zoo.core.data import Splits
from zoo.exports import exporter
from zoo.exports.formats import FORMATS, LOSSLESS_FORMATS


@pytest.fixture(scope="module")
def onnx_file(trained_weights, tmp_path_factory, data_dir) -> Path:
    """linear-regression's float32 ONNX file, exported and verified by zoo.export (once, with $ZOO_TEST_CACHE)."""

    def build(root: Path) -> None:
        shutil.copytree(trained_weights / "linear-regression", root / "linear-regression")
        zoo.export("linear-regression", ["onnx"], weights_dir=str(root), data_dir=str(data_dir))

    return cached(tmp_path_factory, "verification-weights", build) / "linear-regression" / "1" / "model.onnx"


@pytest.fixture(scope="module")
def eager(onnx_file):
    """The inputs the verifier uses (batches 1 and 1000) and eager's outputs for them."""
    model = zoo.load_model("linear-regression", weights_dir=str(onnx_file.parents[2])).model
    inputs = torch.linspace(-3, 3, 1000).reshape(1000, 1)
    with torch.inference_mode():
        return inputs, {batch: model(inputs[:batch]).numpy() for batch in exporter.VERIFY_BATCHES}


def shifted(expected: dict[int, np.ndarray], delta: float, batch: int | None = None) -> dict[int, np.ndarray]:
    """`expected` with `delta` added to the last row of `batch` (every batch when None)."""
    moved = {b: want.copy() for b, want in expected.items()}
    for b, want in moved.items():
        if batch in (None, b):
            want[-1] += delta
    return moved


def test_verify_records_what_it_compared(onnx_file, eager):
    inputs, expected = eager
    record = exporter._verify("onnx", onnx_file, inputs, expected)
    assert record == {"passed": True, "max_abs_diff": record["max_abs_diff"], "tolerance": 1e-5, "batches": [1, 1000],
                      "against": "PyTorch eager"}
    assert 0 <= record["max_abs_diff"] < 1e-6
    assert exporter.TOLERANCE == 1e-5 and exporter.VERIFY_BATCHES == (1, 1000)


@pytest.mark.parametrize("batch", [1, 1000])
def test_verify_refuses_a_file_wrong_at_either_batch(onnx_file, eager, batch):
    inputs, expected = eager
    # 2^-10, exactly: a float32 output (well under 2^13) plus it is another float32.
    with pytest.raises(zoo.VerificationError, match=r"^onnx export does not match PyTorch eager: max abs difference "
                       r"0\.000977, expected under 1e-05; nothing was written$"):
        exporter._verify("onnx", onnx_file, inputs, shifted(expected, 2**-10, batch))


def test_verify_keeps_a_file_within_the_tolerance_and_refuses_one_at_it(onnx_file, eager, monkeypatch):
    inputs, expected = eager
    record = exporter._verify("onnx", onnx_file, inputs, shifted(expected, 2**-18, 1000))
    assert record["max_abs_diff"] == pytest.approx(2**-18, rel=0.05) and record["tolerance"] == 1e-5
    with pytest.raises(zoo.VerificationError, match="max abs difference 1.53e-05, expected under 1e-05"):
        exporter._verify("onnx", onnx_file, inputs, shifted(expected, 2**-16, 1000))
    # At the tolerance exactly (made one a float32 difference can be, against the file's own outputs): refused.
    monkeypatch.setattr(exporter, "TOLERANCE", 2**-16)
    got = {b: exporter.FORMATS["onnx"].load(onnx_file, None)(inputs[:b].numpy()) for b in expected}
    planted = {b: got[b] + np.float32(2**-16) * (np.arange(len(got[b]))[:, None] == len(got[b]) - 1) for b in got}
    with pytest.raises(zoo.VerificationError, match=r"max abs difference 1\.53e-05, expected under 1\.52588e-05"):
        exporter._verify("onnx", onnx_file, inputs, planted)
    assert exporter._verify("onnx", onnx_file, inputs, got)["max_abs_diff"] == 0.0


def test_differences_are_the_largest_at_each_batch_and_a_wrong_shape_raises(eager):
    inputs, expected = eager

    def predict(x: np.ndarray) -> np.ndarray:
        return expected[len(x)] + (0.25 if len(x) == 1 else -0.5)

    assert exporter._differences("onnx", predict, inputs, expected) == {1: 0.25, 1000: 0.5}
    with pytest.raises(zoo.VerificationError, match=r"^pt2 export gives shape \[1, 2\] at batch 1: expected \[1, 1\]$"):
        exporter._differences("pt2", lambda x: np.zeros((len(x), 2), np.float32), inputs, expected)
    with pytest.raises(zoo.VerificationError, match=r"gives shape \[999, 1\] at batch 1000: expected \[1000, 1\]$"):
        exporter._differences("pt2", lambda x: expected[len(x)][: max(1, len(x) - 1)], inputs, expected)


def test_a_lossy_classifier_may_drop_the_bound_in_accuracy_and_no_more():
    record = exporter._check_accuracy("onnx-int8", {"passed": True}, {"accuracy": 97.5}, {"accuracy": 98.0}, 0.5)
    assert record == {"passed": True, "measure": "accuracy", "accuracy": 97.5, "float32_accuracy": 98.0,
                      "accuracy_drop": 0.5, "bound": "accuracy at most 0.5 points below float32's",
                      "max_accuracy_drop": 0.5}
    assert exporter._check_accuracy("f", {}, {"accuracy": 99.0}, {"accuracy": 98.0}, 0.0)["accuracy_drop"] == -1.0
    with pytest.raises(zoo.VerificationError, match=r"^onnx-int8 export scores 97\.49% test accuracy, 0\.51 points "
                       r"below the float32 ONNX file's 98\.00%: expected at most 0\.5 points below; nothing was "
                       r"written$"):
        exporter._check_accuracy("onnx-int8", {}, {"accuracy": 97.49}, {"accuracy": 98.0}, 0.5)


def test_a_lossy_regression_may_differ_by_the_bound_in_relative_rms_and_no_more():
    splits = Splits(torch.zeros(1, 1), torch.zeros(1, 1), torch.arange(4.0).reshape(4, 1), torch.zeros(4, 1), "x")
    reference = lambda x: np.ones((len(x), 1), np.float32) * 2  # noqa: E731
    lossy = lambda x: np.ones((len(x), 1), np.float32) * 3  # noqa: E731
    record = exporter._check_outputs("onnx-fp16", {"passed": True}, lossy, reference, splits, 0.5)
    assert record == {"passed": True, "measure": "relative error", "relative_error": 0.5,
                      "bound": "test-split outputs within 0.5 relative RMS of float32's", "max_relative_error": 0.5}
    with pytest.raises(zoo.VerificationError, match=r"^onnx-fp16 export's test-split outputs differ from the float32 "
                       r"ONNX file's by 0\.5 \(relative RMS\): expected at most 0\.49; nothing was written$"):
        exporter._check_outputs("onnx-fp16", {}, lossy, reference, splits, 0.49)
    # The test inputs are what both files are run on: a file that differs only where x is 3 shows.
    bent = lambda x: np.where(x == 3, 2.5, 2.0).astype(np.float32)  # noqa: E731
    error = exporter._check_outputs("f", {}, bent, reference, splits, 1.0)["relative_error"]
    assert error == pytest.approx(np.sqrt(0.25 / 4) / 2)
    # A float32 file that answers zeros: the error is measured against a floor, not divided by zero.
    zeros = lambda x: np.zeros((len(x), 1), np.float32)  # noqa: E731
    assert exporter._check_outputs("f", {}, zeros, zeros, splits, 0.0)["relative_error"] == 0.0
    with pytest.raises(zoo.VerificationError, match="differ from the float32 ONNX file's by 1e"):
        exporter._check_outputs("f", {}, lambda x: np.ones((len(x), 1), np.float32) * 1e-3, zeros, splits, 1.0)


def test_the_default_bounds():
    assert (exporter.MAX_ACCURACY_DROP, exporter.MAX_RELATIVE_ERROR) == (0.5, 0.01)


def test_formats_are_checked_deduplicated_and_each_derived_one_put_after_its_source():
    assert exporter._check_formats(["onnx"]) == ["onnx"]
    assert exporter._check_formats(["all"]) == list(LOSSLESS_FORMATS) == ["onnx", "torchscript", "pt2"]
    assert exporter._check_formats(["onnx-int8", "pt2", "onnx", "pt2"]) == ["pt2", "onnx", "onnx-int8"]
    assert exporter._check_formats(["onnx-fp16", "all"]) == ["onnx", "torchscript", "pt2", "onnx-fp16"]
    assert exporter._check_formats(("torchscript",)) == ["torchscript"]
    expected = f"expected one or more of {', '.join(FORMATS)} or all \\(= onnx, torchscript, pt2\\)"
    with pytest.raises(zoo.NotExportableError, match=f"^unknown export format 'pt3': {expected}$"):
        exporter._check_formats(["onnx", "pt3"])
    with pytest.raises(zoo.NotExportableError, match=f"^no export format given: {expected}$"):
        exporter._check_formats([])


def test_a_planted_wrong_file_is_refused_by_export_and_nothing_is_written(onnx_file, data_dir, monkeypatch):
    """The verifier inside zoo.export: a torchscript file whose last output is off by 1e-3 is refused at batch 1000,
    and the version folder is left byte for byte as it was."""
    folder = onnx_file.parent
    before = {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    original = FORMATS["torchscript"].load

    def wrong(path, threads):
        predict = original(path, threads)
        return lambda x: shifted({len(x): predict(x)}, 1e-3)[len(x)]

    monkeypatch.setitem(FORMATS, "torchscript", dataclasses.replace(FORMATS["torchscript"], load=wrong))
    with pytest.raises(zoo.VerificationError, match=r"^torchscript export does not match PyTorch eager: max abs "
                       r"difference (0\.001|0\.000999), expected under 1e-05; nothing was written$"):
        zoo.export("linear-regression", ["torchscript"], weights_dir=str(folder.parents[1]), data_dir=str(data_dir))
    assert {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} == before


def test_lossy_formats_made_from_the_versions_own_file_are_verified_on_the_task_and_published_together(
        onnx_file, data_dir, tmp_path):
    """The whole of zoo.export on the successful path: int8 and fp16 made from the version's stored float32 file
    (not a fresh one), each verified on the test split, the test data pair and a rewritten file published with them,
    and nothing left behind."""
    root = tmp_path / "weights"
    shutil.copytree(onnx_file.parents[1], root / "linear-regression")
    folder = root / "linear-regression" / "1"
    float32 = folder / "model.onnx"
    stored = zoo.WeightsStore(root).manifest("linear-regression", 1)["artifacts"]["onnx"]
    shutil.rmtree(folder / "test_data_set_0")  # written again by this export

    def rewrite(loaded, manifest, context):
        assert sorted(manifest["artifacts"]) == ["onnx", "onnx-fp16", "onnx-int8"]  # the manifest as it will be
        return {folder / "NOTES.md": f"{len(manifest['artifacts'])} artifacts\n"}

    report = exporter.export("linear-regression", ["onnx-fp16", "onnx-int8"], weights_dir=str(root),
                        data_dir=str(data_dir), rewrite=rewrite)
    assert report.model == "linear-regression" and report.version == 1 and report.folder == folder
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.version = 2  # type: ignore[misc]
    assert sorted(report.artifacts) == ["onnx-fp16", "onnx-int8"]
    for fmt, file in (("onnx-fp16", "model.fp16.onnx"), ("onnx-int8", "model.int8.onnx")):
        entry = report.artifacts[fmt]
        assert entry["file"] == file and entry["bytes"] == (folder / file).stat().st_size
        assert entry["derived_from"] == {"format": "onnx", "sha256": stored["sha256"], "bytes": float32.stat().st_size,
                                         "size_ratio": round(entry["bytes"] / float32.stat().st_size, 4)}
        check = entry["verification"]
        assert check["passed"] is True and check["measure"] == "relative error"
        assert 0 < check["relative_error"] <= exporter.MAX_RELATIVE_ERROR and check["batches"] == [1, 1000]
    assert zoo.WeightsStore(root).manifest("linear-regression", 1)["artifacts"]["onnx"] == stored  # kept as it was
    assert (folder / "NOTES.md").read_text() == "3 artifacts\n"
    pair = [numpy_helper.to_array(load_tensor(str(folder / "test_data_set_0" / f"{stem}.pb")))
            for stem in ("input_0", "output_0")]
    assert pair[0].shape == (4, 1) and pair[1].shape == (4, 1)  # TEST_DATA_BATCH rows of the batch-1000 inputs
    eager = zoo.load_model("linear-regression", weights_dir=str(root)).model
    with torch.inference_mode():
        np.testing.assert_allclose(pair[1], eager(torch.from_numpy(pair[0].copy())).numpy(), rtol=1e-6)
    assert len(np.unique(pair[0])) == 4
    assert [p.name for p in folder.rglob("*") if p.name.startswith(".")] == [".manifest.lock"]  # no temp file left


def test_scores_are_rounded_as_recorded():
    assert exporter._check_accuracy("f", {}, {"accuracy": 97.12346}, {"accuracy": 98.0}, 1.0)["accuracy_drop"] == 0.8765
    splits = Splits(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(3, 1), torch.zeros(3, 1), "x")
    third = exporter._check_outputs("f", {}, lambda x: np.full((len(x), 1), 4.0, np.float32),
                                    lambda x: np.full((len(x), 1), 3.0, np.float32), splits, 1.0)
    assert third["relative_error"] == 0.33333334  # 1/3 in float32, to 8 places


def test_a_lossy_format_whose_float32_file_is_gone_is_made_from_a_fresh_verified_one(onnx_file, data_dir, tmp_path,
                                                                                       monkeypatch):
    """The manifest still records model.onnx but the file is gone: the fp16 file is made from a fresh float32 export,
    verified against eager first (a planted wrong one is refused) and never kept."""
    root = tmp_path / "weights"
    shutil.copytree(onnx_file.parents[1], root / "linear-regression")
    folder = root / "linear-regression" / "1"
    (folder / "model.onnx").unlink()
    report = exporter.export("linear-regression", ["onnx-fp16"], weights_dir=str(root), data_dir=str(data_dir))
    assert report.artifacts["onnx-fp16"]["verification"]["passed"] and not (folder / "model.onnx").exists()
    assert (folder / "model.fp16.onnx").is_file()
    original = FORMATS["onnx"].export

    class Shifted(torch.nn.Module):
        def __init__(self, model: torch.nn.Module) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.model(x) + 1e-3

    def wrong(model, interface, path, opset):
        return original(Shifted(model).eval(), interface, path, opset)

    monkeypatch.setitem(FORMATS, "onnx", dataclasses.replace(FORMATS["onnx"], export=wrong))
    before = {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    with pytest.raises(zoo.VerificationError, match="^onnx export does not match PyTorch eager"):
        exporter.export("linear-regression", ["onnx-fp16"], weights_dir=str(root), data_dir=str(data_dir))
    assert {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()} == before
