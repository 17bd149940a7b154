"""Training precision: the recipe's field and --precision, autocast in the loop, float32 weights and metrics."""

import pytest
from safetensors import safe_open
from typer.testing import CliRunner

import zoo
from zoo.cli.main import app


def train(name, recipe="default", weights_dir=None, **overrides):
    return zoo.train(name, recipe, overrides, device="cpu", weights_dir=str(weights_dir))


def stored_dtypes(result) -> set[str]:
    with safe_open(str(result.path / "model.safetensors"), "pt") as weights:
        return {str(weights.get_tensor(key).dtype) for key in weights.keys()}


def test_bf16_reaches_the_manifest_and_the_weights_stay_float32(weights_dir):
    fp32 = train("two-layer-net", weights_dir=weights_dir, epochs=30)
    bf16 = train("two-layer-net", weights_dir=weights_dir, epochs=30, precision="bf16")
    assert fp32.manifest["precision"] == "fp32" and fp32.manifest["recipe"]["params"]["precision"] == "fp32"
    assert bf16.manifest["precision"] == "bf16" and bf16.manifest["recipe"]["params"]["precision"] == "bf16"
    assert stored_dtypes(bf16) == stored_dtypes(fp32) == {"torch.float32"}
    # Autocast really ran: the same seed and data give another loss curve in bf16.
    assert bf16.manifest["loss_history"] != fp32.manifest["loss_history"]
    assert bf16.metrics["final_train_loss"] < 0.01 * bf16.metrics["initial_train_loss"]


def test_metrics_after_bf16_training_are_float32_on_the_stored_weights(weights_dir):
    trained = train("linear-regression", weights_dir=weights_dir, precision="bf16")
    report = zoo.evaluate(f"linear-regression:{trained.version}", weights_dir=str(weights_dir))
    assert report.metrics == report.recorded
    assert trained.metrics["slope"] == pytest.approx(0.5, abs=0.05)


def test_fp16_on_cpu_is_refused_before_anything_is_written(weights_dir):
    with pytest.raises(zoo.InvalidOverrideError, match="precision 'fp16' needs a CUDA device, got 'cpu'; use bf16"):
        train("two-layer-net", weights_dir=weights_dir, precision="fp16")
    assert not weights_dir.exists()


def test_precision_on_the_command_line(weights_dir):
    runner = CliRunner()
    trained = runner.invoke(app, ["train", "two-layer-net", "--epochs", "5", "--precision", "bf16", "--json"])
    assert trained.exit_code == 0, trained.output
    assert '"precision": "bf16"' in trained.stdout
    by_set = runner.invoke(app, ["train", "two-layer-net", "--epochs", "5", "--set", "precision=bf16", "--json"])
    assert by_set.exit_code == 0 and '"precision": "bf16"' in by_set.stdout
    for bad, message in (("fp8", "error: bad value for 'precision': expected one of fp32, bf16, fp16, got 'fp8'"),
                         ("fp16", "error: precision 'fp16' needs a CUDA device, got 'cpu'; use bf16 (or fp32) on cpu")):
        refused = runner.invoke(app, ["train", "two-layer-net", "--device", "cpu", "--precision", bad])
        assert refused.exit_code == 2
        assert refused.output.strip() == message  # one line, nothing else
    assert zoo.WeightsStore(str(weights_dir)).versions("two-layer-net") == [1, 2]


def test_document_recipes_stay_float32():
    for name in zoo.list_models():
        spec = zoo.get_model(name)
        if "document" in spec.recipes:
            assert spec.recipe("document").precision == "fp32", name


@pytest.mark.slow
@pytest.mark.parametrize("name,bar,seed", [("mnist-mlp", 98.0, 0), ("mnist-mlp", 98.0, 1), ("lenet", 98.8, 0)])
def test_default_recipes_keep_their_accuracy_bars_at_their_precision(weights_dir, name, bar, seed):
    result = train(name, weights_dir=weights_dir, seed=seed)
    assert result.manifest["precision"] == zoo.get_model(name).recipe().precision == "bf16"
    assert result.metrics["accuracy"] >= bar
    assert stored_dtypes(result) == {"torch.float32"}
