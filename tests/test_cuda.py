"""The zoo on a GPU: every model trained on CUDA with both recipes, evaluated, exported and checked on CPU, served.

These run wherever CUDA is present (`pytest -m cuda`) and skip, saying why, everywhere else; CI has no GPU.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from safetensors import safe_open
from serving import mnist_digits

import zoo
from zoo.serve import create_app

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; torch.cuda.is_available() is False"),
]

MODELS = ("mnist-mlp", "lenet", "linear-regression", "two-layer-net", "tiny-fnn", "himmelblau")
BARS = {"mnist-mlp": 98.0, "lenet": 98.8}  # the default recipes' accuracy bars, the same as on CPU


@pytest.fixture(scope="module")
def cuda_root(tmp_path_factory):
    return tmp_path_factory.mktemp("cuda-weights")


@pytest.fixture(scope="module")
def trained_on_cuda(cuda_root, data_dir):
    """Every model trained on CUDA with each of its recipes: {(name, recipe): TrainResult}."""
    runs = {}
    for name in MODELS:
        for recipe in zoo.get_model(name).recipes:
            runs[name, recipe] = zoo.train(
                name, recipe, device="cuda", data_dir=str(data_dir), weights_dir=str(cuda_root)
            )
    return runs


def close_to(recorded: dict, now: dict) -> None:
    """CPU and GPU kernels round differently: the same metrics to within a few test samples and 1e-3 relative."""
    for key, value in recorded.items():
        if key == "accuracy":
            assert now[key] == pytest.approx(value, abs=0.05), key
        elif isinstance(value, float):
            assert now[key] == pytest.approx(value, rel=1e-3, abs=1e-5), key
        elif isinstance(value, list):
            assert np.allclose(now[key], value, rtol=1e-3, atol=1e-4), key
        elif key != "correct":
            assert now[key] == value, key


@pytest.mark.parametrize("name", MODELS)
def test_every_recipe_trains_on_cuda_and_evaluates_on_cuda_and_cpu(trained_on_cuda, cuda_root, data_dir, name):
    for recipe in zoo.get_model(name).recipes:
        result = trained_on_cuda[name, recipe]
        assert result.manifest["device"].startswith("cuda")
        with safe_open(str(result.path / "model.safetensors"), "pt") as weights:
            assert {weights.get_tensor(key).dtype for key in weights.keys()} == {torch.float32}
        if recipe == "default" and name in BARS:
            assert result.metrics["accuracy"] >= BARS[name]
        ref = f"{name}:{result.version}"
        on_cuda = zoo.evaluate(ref, weights_dir=str(cuda_root), data_dir=str(data_dir), device="cuda")
        assert on_cuda.metrics == on_cuda.recorded
        on_cpu = zoo.evaluate(ref, weights_dir=str(cuda_root), data_dir=str(data_dir), device="cpu")
        close_to(on_cpu.recorded, on_cpu.metrics)


@pytest.mark.parametrize("name", [name for name in MODELS if zoo.get_model(name).exportable])
def test_cuda_trained_versions_export_and_verify_on_cpu(trained_on_cuda, cuda_root, data_dir, name):
    result = trained_on_cuda[name, "default"]
    ref = f"{name}:{result.version}"
    report = zoo.export(ref, ["all"], weights_dir=str(cuda_root), data_dir=str(data_dir))
    assert set(report.artifacts) == set(zoo.LOSSLESS_FORMATS)  # all: every lossless format
    for entry in report.artifacts.values():
        assert entry["verification"] is not None
    for backend in ("onnx", "torchscript", "pt2"):
        scored = zoo.evaluate(ref, weights_dir=str(cuda_root), data_dir=str(data_dir), backend=backend)
        close_to(scored.recorded, scored.metrics)


def test_a_cuda_trained_version_is_served(trained_on_cuda, cuda_root, data_dir):
    version = trained_on_cuda["mnist-mlp", "default"].version
    client = create_app({"WEIGHTS_DIR": str(cuda_root), "MODELS": ("mnist-mlp",)}).test_client()
    digits, labels = mnist_digits(data_dir, 64)
    answer = client.post(f"/v1/models/mnist-mlp/versions/{version}/predict", json={"pixels": digits.tolist()})
    assert answer.status_code == 200, answer.get_data(as_text=True)
    predicted = np.array([p["digit"] for p in answer.get_json()["predictions"]])
    assert (predicted == labels).mean() >= 0.95


@pytest.mark.parametrize("name", ["mnist-mlp", "lenet"])
def test_same_seed_on_the_same_gpu_gives_the_same_metrics(cuda_root, data_dir, name):
    runs = [
        zoo.train(name, overrides={"epochs": 2}, device="cuda", data_dir=str(data_dir), weights_dir=str(cuda_root))
        for _ in range(2)
    ]
    assert runs[0].metrics == runs[1].metrics
    assert runs[0].manifest["loss_history"] == runs[1].manifest["loss_history"]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_every_precision_trains_on_cuda_and_keeps_the_bar(cuda_root, data_dir, precision):
    result = zoo.train(
        "mnist-mlp",
        overrides={"precision": precision},
        device="cuda",
        data_dir=str(data_dir),
        weights_dir=str(cuda_root),
    )
    assert result.manifest["precision"] == precision
    assert result.metrics["accuracy"] >= BARS["mnist-mlp"]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_training_steps_never_wait_for_the_gpu(cuda_root, data_dir, precision):
    """No host synchronisation per step: a run without progress reports syncs a few times per epoch, not per step."""
    zoo.train("mnist-mlp", overrides={"epochs": 1}, device="cuda", data_dir=str(data_dir), weights_dir=str(cuda_root))
    recipe = zoo.get_model("mnist-mlp").recipe(overrides={"epochs": 2, "precision": precision})
    steps = recipe.epochs * -(-60_000 // recipe.batch_size)
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            zoo.train(
                "mnist-mlp",
                overrides=recipe.to_dict(),
                device="cuda",
                data_dir=str(data_dir),
                weights_dir=str(cuda_root),
            )
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchronizing" in str(w.message)]
    assert len(syncs) < steps / 10, f"{len(syncs)} host syncs in {steps} steps"
