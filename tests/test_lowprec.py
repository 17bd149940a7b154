"""int8 and fp16 ONNX exports: named apart from model.onnx, small, verified on the test split against the float32 file
(refused, with nothing written, when they score too far below it), and used wherever a format is: evaluate, the
server's backends, Triton repositories."""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

import zoo
from zoo.cli.main import app
from zoo.core.data import fingerprint, load_mnist
from zoo.exports import exporter
from zoo.exports.formats import FORMATS, LOSSLESS_FORMATS
from zoo.exports.quantize import CALIBRATION_COUNT, Calibration, draw_calibration
from zoo.serve import create_app
from zoo.store.versions import RELEASED_WEIGHTS, sha256_file

LOSSY = ("onnx-int8", "onnx-fp16")
# The ceilings: above them something is stored twice or left in float32.
SIZE_CEILING = {"onnx-int8": 0.35, "onnx-fp16": 0.6}
runner = CliRunner()


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (hidden ones included, so stray temp files show) with its sha256."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def released_copy(root: Path, *names: str) -> Path:
    """The released versions of `names` as a weights root of one's own (released versions are read-only)."""
    for name in names:
        shutil.copytree(RELEASED_WEIGHTS / name, root / name)
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    return root


@pytest.fixture(scope="module")
def lowprec(tmp_path_factory, data_dir) -> Path:
    """The released mnist-mlp:1 and linear-regression:1, copied and exported to both low-precision formats
    (read-only for tests)."""
    root = released_copy(tmp_path_factory.mktemp("lowprec") / "weights", "mnist-mlp", "linear-regression")
    for name in ("mnist-mlp", "linear-regression"):
        zoo.export(f"{name}:1", list(LOSSY), weights_dir=str(root), data_dir=str(data_dir))
    return root


def manifest_of(root: Path, name: str, version: int = 1) -> dict:
    return json.loads((root / name / str(version) / "manifest.json").read_text())


@pytest.mark.parametrize("name", ["mnist-mlp", "linear-regression"])
def test_files_are_named_apart_recorded_and_small(lowprec, name):
    folder = lowprec / name / "1"
    artifacts = manifest_of(lowprec, name)["artifacts"]
    released = manifest_of(RELEASED_WEIGHTS, name)["artifacts"]
    # The float32 file they are made from is the version's own, untouched.
    assert sha256_file(folder / "model.onnx") == released["onnx"]["sha256"]
    float32_bytes = (folder / "model.onnx").stat().st_size
    for fmt, file in (("onnx-int8", "model.int8.onnx"), ("onnx-fp16", "model.fp16.onnx")):
        entry = artifacts[fmt]
        assert entry["file"] == file == FORMATS[fmt].file
        assert entry["sha256"] == sha256_file(folder / file) and entry["bytes"] == (folder / file).stat().st_size
        assert entry["derived_from"] == {"format": "onnx", "sha256": released["onnx"]["sha256"], "bytes": float32_bytes,
                                         "size_ratio": round(entry["bytes"] / float32_bytes, 4)}
        if name == "mnist-mlp":  # a 1x1 linear model is all graph and no weights: its size ratio means nothing
            assert entry["bytes"] <= SIZE_CEILING[fmt] * float32_bytes, (fmt, entry["bytes"], float32_bytes)
    assert not [p for p in folder.iterdir() if p.name.startswith(".") and p.name != ".manifest.lock"]


def test_graphs_take_and_give_float32_under_the_same_names_and_store_low_precision_weights(lowprec):
    folder = lowprec / "mnist-mlp" / "1"
    for fmt, stored in (("onnx-int8", onnx.TensorProto.INT8), ("onnx-fp16", onnx.TensorProto.FLOAT16)):
        graph = onnx.load(str(folder / FORMATS[fmt].file)).graph
        onnx.checker.check_model(onnx.load(str(folder / FORMATS[fmt].file)), full_check=True)
        assert [i.name for i in graph.input] == ["image"] and [o.name for o in graph.output] == ["logits"]
        for value in (*graph.input, *graph.output):
            assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
            assert value.type.tensor_type.shape.dim[0].dim_param  # the batch stays dynamic
        weights = {t.name: t for t in graph.initializer if len(t.dims) == 2}
        assert len(weights) == 3 and all(t.data_type == stored for t in weights.values()), fmt
        large_float32 = [t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT
                         and int(np.prod(t.dims)) > 1000]
        assert large_float32 == [], f"{fmt} keeps float32 weights: {large_float32}"
    ops = {node.op_type for node in onnx.load(str(folder / "model.int8.onnx")).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # QDQ form


def test_int8_manifest_records_the_exact_calibration_data(lowprec, data_dir):
    manifest = manifest_of(lowprec, "mnist-mlp")
    calibration = manifest["artifacts"]["onnx-int8"]["calibration"]
    splits = load_mnist(data_dir, torch.device("cpu"))
    again = draw_calibration(splits.train_x, manifest["seed"], splits.description)
    assert calibration["count"] == CALIBRATION_COUNT == len(again.inputs)
    assert calibration["seed"] == manifest["seed"]
    assert calibration["fingerprint"] == fingerprint(torch.from_numpy(again.inputs))
    assert calibration["shape"] == [CALIBRATION_COUNT, 1, 28, 28] and calibration["dtype"] == "float32"
    # Training images, not test images: every one of them is in the training split.
    train = splits.train_x.reshape(len(splits.train_x), -1)
    assert all(bool((train == row).all(1).any()) for row in torch.from_numpy(again.inputs[:8]).reshape(8, -1))
    assert manifest["artifacts"]["onnx-int8"]["per_channel"] is True


def test_classifier_verification_is_on_test_accuracy_against_the_float32_file(lowprec):
    artifacts = manifest_of(lowprec, "mnist-mlp")["artifacts"]
    for fmt in LOSSY:
        check = artifacts[fmt]["verification"]
        assert check["passed"] and check["measure"] == "accuracy" and check["max_accuracy_drop"] == 0.5
        assert check["float32_accuracy"] == check["float32_metrics"]["accuracy"] == 98.48  # the released file's
        assert check["accuracy"] == check["metrics"]["accuracy"] and check["metrics"]["total"] == 10000
        assert check["accuracy_drop"] == pytest.approx(check["float32_accuracy"] - check["accuracy"], abs=1e-9)
        assert check["accuracy_drop"] <= 0.5
        assert check["batches"] == [1, 1000] and 0 < check["max_abs_diff"] < 5  # lossy, yet close to eager
    diffs = {fmt: artifacts[fmt]["verification"]["max_abs_diff"] for fmt in LOSSY}
    assert diffs["onnx-fp16"] < diffs["onnx-int8"]


def test_regression_verification_bounds_the_error_against_float32_and_states_it(lowprec):
    for fmt in LOSSY:
        check = manifest_of(lowprec, "linear-regression")["artifacts"][fmt]["verification"]
        assert check["measure"] == "relative error" and check["max_relative_error"] == 0.01
        assert "relative RMS" in check["bound"]
        assert 0 < check["relative_error"] <= 0.01
        assert set(check["metrics"]) == set(check["float32_metrics"]) >= {"test_mse", "slope", "intercept"}


def test_the_card_lists_each_file_with_its_size_score_and_difference(lowprec):
    card = (lowprec / "mnist-mlp" / "1" / "README.md").read_text()
    table = card[card.index("## Exported files"):card.index("## How to use")]
    artifacts = manifest_of(lowprec, "mnist-mlp")["artifacts"]
    for fmt in ("onnx", *LOSSY):
        row = next(line for line in table.splitlines() if line.startswith(f"| {fmt} |"))
        entry = artifacts[fmt]
        assert f"`{entry['file']}`" in row and f"{entry['bytes'] / 1024:,.0f} KiB" in row
        assert f"{entry['verification']['max_abs_diff']:.3g}" in row
        if fmt in LOSSY:
            assert f"{entry['verification']['accuracy']:.2f}% accuracy" in row
            assert f"{entry['bytes'] / artifacts['onnx']['bytes']:.2f}x float32's" in row


def test_runtimes_answer_float32_batches_from_the_low_precision_files(lowprec, data_dir):
    images = zoo.core.data.mnist_test_images(data_dir, 300)[0].numpy()
    eager = zoo.open_runtime("mnist-mlp:1", "torch", weights_dir=str(lowprec)).run(images)
    for fmt in LOSSY:
        runtime = zoo.open_runtime("mnist-mlp:1", fmt, weights_dir=str(lowprec))
        assert runtime.file == FORMATS[fmt].file and runtime.platform == "onnxruntime_onnx"
        for batch in (1, 300):
            got = runtime.run(images[:batch])
            assert got.shape == (batch, 10) and got.dtype == np.float32
        # Lossy, but the same digits almost everywhere.
        assert (runtime.run(images).argmax(1) == eager.argmax(1)).mean() >= 0.99


def test_evaluate_scores_the_int8_file_on_its_own_outputs(lowprec, data_dir):
    result = runner.invoke(app, ["evaluate", "mnist-mlp:1", "--backend", "onnx-int8", "--json",
                                 "--weights-dir", str(lowprec), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["backend"] == "onnx-int8"
    # The same numbers the export's verification measured, not the eager ones the version recorded.
    assert report["metrics"] == manifest_of(lowprec, "mnist-mlp")["artifacts"]["onnx-int8"]["verification"]["metrics"]
    assert report["recorded"]["accuracy"] == 98.48


def test_all_means_the_lossless_formats_and_derived_ones_come_after_their_source():
    assert exporter._check_formats(["all"]) == list(LOSSLESS_FORMATS) == ["onnx", "torchscript", "pt2"]
    asked = ["onnx-fp16", "onnx-int8", "onnx", "onnx-int8"]
    assert exporter._check_formats(asked) == ["onnx", "onnx-fp16", "onnx-int8"]
    assert {fmt for fmt, f in FORMATS.items() if f.lossy} == set(LOSSY)


def test_a_version_without_onnx_gets_only_what_was_asked(trained_weights, tmp_path, data_dir, capfd):
    root = tmp_path / "weights"
    shutil.copytree(trained_weights / "mnist-mlp", root / "mnist-mlp")
    before = set(snapshot(root / "mnist-mlp" / "1"))
    root_handlers = list(logging.getLogger().handlers)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = zoo.export("mnist-mlp", ["onnx-int8"], weights_dir=str(root), data_dir=str(data_dir))
    assert [str(w.message) for w in caught] == []
    assert capfd.readouterr() == ("", "")  # onnxruntime.quantization's prints and warnings stay inside
    assert logging.getLogger().handlers == root_handlers
    folder = root / "mnist-mlp" / "1"
    # The float32 file it was made from was a temp file: not published, not recorded, not left behind.
    assert not (folder / "model.onnx").exists()
    assert sorted(zoo.WeightsStore(root).manifest("mnist-mlp", 1)["artifacts"]) == ["onnx-int8"]
    assert set(snapshot(folder)) - before == {"model.int8.onnx", "test_data_set_0/input_0.pb",
                                              "test_data_set_0/output_0.pb", ".manifest.lock"}
    check = report.artifacts["onnx-int8"]["verification"]
    assert check["accuracy_drop"] <= 0.5
    assert report.artifacts["onnx-int8"]["bytes"] <= 0.35 * report.artifacts["onnx-int8"]["derived_from"]["bytes"]


def ruined(train_x: torch.Tensor, seed: int, source: str, count: int = CALIBRATION_COUNT) -> Calibration:
    """A planted defect: calibration on images 20 times too dark, so every activation range is far too narrow and
    real digits saturate."""
    good = draw_calibration(train_x, seed, source, count)
    return Calibration(good.inputs * 0.05, seed, source)


def test_a_ruinous_calibration_is_refused_and_nothing_is_written(lowprec, tmp_path, data_dir, monkeypatch):
    root = tmp_path / "weights"
    shutil.copytree(lowprec / "mnist-mlp", root / "mnist-mlp")
    before = snapshot(root)
    monkeypatch.setattr(exporter, "draw_calibration", ruined)
    result = runner.invoke(app, ["export", "mnist-mlp:1", "-f", "onnx-int8", "--weights-dir", str(root),
                                 "--data-dir", str(data_dir)])
    assert result.exit_code == 1, result.output
    message = result.output.strip()
    assert len(message.splitlines()) == 1
    assert "onnx-int8 export scores" in message and "points below the float32 ONNX file's 98.48%" in message
    assert "expected at most 0.5 points below; nothing was written" in message
    assert snapshot(root) == before


@pytest.mark.parametrize("fmt", LOSSY)
def test_a_tighter_bound_refuses_a_regression_export_and_nothing_is_written(lowprec, tmp_path, data_dir, fmt):
    root = tmp_path / "weights"
    shutil.copytree(lowprec / "linear-regression", root / "linear-regression")
    before = snapshot(root)
    refusal = rf"{fmt} export's test-split outputs differ .* expected at most 1e-09"
    with pytest.raises(zoo.VerificationError, match=refusal):
        zoo.export("linear-regression:1", ["onnx", fmt], weights_dir=str(root), data_dir=str(data_dir),
                   max_relative_error=1e-9)
    assert snapshot(root) == before


def test_no_verify_records_that_the_lossy_file_was_not_verified(lowprec, tmp_path, data_dir):
    root = tmp_path / "weights"
    shutil.copytree(lowprec / "linear-regression", root / "linear-regression")
    report = zoo.export("linear-regression:1", ["onnx-fp16"], verify=False, weights_dir=str(root),
                        data_dir=str(data_dir))
    assert report.artifacts["onnx-fp16"]["verification"] is None


# --- serving


@pytest.fixture(scope="module")
def int8_only(trained_weights, tmp_path_factory, data_dir) -> Path:
    """A root where mnist-mlp:1 has every export and mnist-mlp:2 only an int8 one."""
    root = tmp_path_factory.mktemp("int8-only") / "weights"
    shutil.copytree(trained_weights / "mnist-mlp", root / "mnist-mlp")
    shutil.copytree(root / "mnist-mlp" / "1", root / "mnist-mlp" / "2")
    manifest = json.loads((root / "mnist-mlp" / "2" / "manifest.json").read_text())
    (root / "mnist-mlp" / "2" / "manifest.json").write_text(json.dumps({**manifest, "version": 2}))
    zoo.export("mnist-mlp:1", ["onnx", *LOSSY], weights_dir=str(root), data_dir=str(data_dir))
    zoo.export("mnist-mlp:2", ["onnx-int8"], weights_dir=str(root), data_dir=str(data_dir))
    return root


def test_auto_never_picks_a_lossy_format(int8_only):
    from zoo.serve.repository import plan_versions

    store = zoo.WeightsStore(int8_only)
    assert plan_versions(["mnist-mlp"], store) == {"mnist-mlp": {1: "onnx", 2: "torch"}}
    assert plan_versions(["mnist-mlp"], store, "onnx-int8") == {"mnist-mlp": {1: "onnx-int8", 2: "onnx-int8"}}
    assert plan_versions(["mnist-mlp"], store, "onnx-fp16") == {"mnist-mlp": {1: "onnx-fp16"}}


@pytest.mark.parametrize("fmt", LOSSY)
def test_the_server_says_which_file_answered(int8_only, data_dir, fmt):
    client = create_app({"WEIGHTS_DIR": str(int8_only), "BACKEND": fmt, "MODELS": ["mnist-mlp"]}).test_client()
    images = zoo.core.data.mnist_test_images(data_dir, 8)[0]
    answer = client.post("/v1/models/mnist-mlp/versions/1/predict", json={"pixels": images[:, 0].tolist()}).get_json()
    assert answer["backend"] == fmt and answer["version"] == 1 and len(answer["predictions"]) == 8
    want = zoo.open_runtime("mnist-mlp:1", fmt, weights_dir=str(int8_only)).run(images.numpy()).argmax(1)
    assert [p["digit"] for p in answer["predictions"]] == want.tolist()
    meta = client.get("/v2/models/mnist-mlp/versions/1").get_json()
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["parameters"] == {"backend": fmt, "file": FORMATS[fmt].file}
    float32 = create_app({"WEIGHTS_DIR": str(int8_only), "MODELS": ["mnist-mlp"]}).test_client()
    assert float32.get("/v2/models/mnist-mlp/versions/1").get_json()["parameters"] == {"backend": "onnx",
                                                                                         "file": "model.onnx"}
    assert float32.get("/v2/models/mnist-mlp/versions/2").get_json()["parameters"] == {
        "backend": "torch", "file": "model.safetensors"}


# --- Triton


def test_triton_repository_holds_each_low_precision_file_in_its_own_model(lowprec, tmp_path):
    repo = tmp_path / "repo"
    result = runner.invoke(app, ["triton-repo", str(repo), "mnist-mlp:1", "linear-regression:1", "-f", "onnx",
                                 "-f", "onnx-int8", "-f", "onnx-fp16", "--weights-dir", str(lowprec), "--json"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in repo.iterdir()) == sorted(
        f"{name}{suffix}" for name in ("mnist-mlp", "linear-regression") for suffix in ("", "-onnx-int8", "-onnx-fp16"))
    for name in ("mnist-mlp", "linear-regression"):
        spec = zoo.get_model(name)
        for fmt, folder in (("onnx-int8", f"{name}-onnx-int8"), ("onnx-fp16", f"{name}-onnx-fp16")):
            config = text_format.Parse((repo / folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
            assert config.name == folder and config.platform == "onnxruntime_onnx" and config.max_batch_size == 256
            assert list(config.version_policy.specific.versions) == [1]
            (tensor_in,), (tensor_out,) = config.input, config.output
            assert (tensor_in.name, tensor_out.name) == (spec.input.name, spec.output.name)
            assert tensor_in.data_type == tensor_out.data_type == model_config_pb2.TYPE_FP32
            # Triton's onnxruntime backend reads model.onnx; it is the low-precision file, byte for byte.
            assert sorted(p.name for p in (repo / folder / "1").iterdir()) == ["model.onnx"]
            exported = lowprec / name / "1" / FORMATS[fmt].file
            assert sha256_file(repo / folder / "1" / "model.onnx") == sha256_file(exported)
            session = onnxruntime.InferenceSession(str(repo / folder / "1" / "model.onnx"),
                                                   providers=["CPUExecutionProvider"])
            for batch in (1, config.max_batch_size):
                x = np.random.default_rng(0).random((batch, *tensor_in.dims), dtype=np.float32)
                (y,) = session.run([tensor_out.name], {tensor_in.name: x})
                assert y.shape == (batch, *tensor_out.dims) and y.dtype == np.float32


def test_triton_repo_without_the_int8_export_names_the_command(trained_weights, tmp_path):
    root = tmp_path / "weights"
    shutil.copytree(trained_weights / "lenet", root / "lenet")
    result = runner.invoke(app, ["triton-repo", str(tmp_path / "repo"), "lenet:1", "-f", "onnx-int8",
                                 "--weights-dir", str(root)])
    assert result.exit_code == 1
    assert "zoo export lenet:1 --format onnx-int8" in result.output
    assert not (tmp_path / "repo").exists()


# --- real MNIST accuracy on the other architecture


@pytest.mark.slow
def test_lenet_low_precision_exports_keep_their_accuracy_and_shrink(tmp_path, data_dir):
    root = released_copy(tmp_path / "weights", "lenet")
    report = zoo.export("lenet:1", list(LOSSY), weights_dir=str(root), data_dir=str(data_dir))
    float32_bytes = (root / "lenet" / "1" / "model.onnx").stat().st_size
    for fmt in LOSSY:
        entry = report.artifacts[fmt]
        assert entry["bytes"] <= SIZE_CEILING[fmt] * float32_bytes
        check = entry["verification"]
        assert check["float32_accuracy"] == 99.29 and check["accuracy_drop"] <= 0.5
        scored = zoo.evaluate("lenet:1", weights_dir=str(root), data_dir=str(data_dir), backend=fmt)
        assert scored.metrics == check["metrics"]
        assert scored.metrics["accuracy"] >= 99.29 - 0.5


@pytest.mark.slow
def test_zoo_serve_answers_from_the_fp16_file(lowprec, tmp_path, data_dir):
    from serving import call, start_server, stop_server

    process, url = start_server(lowprec, tmp_path, "--backend", "onnx-fp16", "--workers", "1", "--models", "mnist-mlp")
    try:
        images = zoo.core.data.mnist_test_images(data_dir, 4)[0]
        body = json.dumps({"pixels": images[:, 0].tolist()}).encode()
        status, answer = call(url, "/v1/models/mnist-mlp/predict", body)
        assert status == 200 and answer["backend"] == "onnx-fp16"
        want = zoo.open_runtime("mnist-mlp:1", "onnx-fp16", weights_dir=str(lowprec)).run(images.numpy()).argmax(1)
        assert [p["digit"] for p in answer["predictions"]] == want.tolist()
        status, meta = call(url, "/v2/models/mnist-mlp")
        assert status == 200 and meta["parameters"] == {"backend": "onnx-fp16", "file": "model.fp16.onnx"}
    finally:
        log = stop_server(process)
    assert "1 on onnx-fp16" in log
