"""The documents' results, reproduced through zoo.train on CPU."""

import pytest

import zoo


def train(name, recipe="document", weights_dir=None, **overrides):
    return zoo.train(name, recipe, overrides, device="cpu", weights_dir=str(weights_dir))


def test_tiny_fnn_document_starts_at_0_2097_and_falls_every_step(weights_dir):
    result = train("tiny-fnn", weights_dir=weights_dir)
    history = result.manifest["loss_history"]
    assert len(history) == 10
    assert history[0] == pytest.approx(0.20971, abs=5e-6)
    assert all(later < earlier for earlier, later in zip(history, history[1:], strict=False))


@pytest.mark.parametrize(
    "overrides", [{"activation": "relu"}, {"loss": "bce"}, {"optimizer": "adam", "lr": 0.1}, {"init": "none"}]
)
def test_tiny_fnn_exercises_train(weights_dir, overrides):
    """Each override is recorded and takes effect: the run's loss curve is not the document recipe's (an override
    recorded in the manifest but never handed to the loop would give the same curve)."""
    result = train("tiny-fnn", weights_dir=weights_dir, **overrides)
    assert result.manifest["recipe"]["params"].items() >= overrides.items()
    document = train("tiny-fnn", weights_dir=weights_dir).manifest["loss_history"]
    assert len(result.manifest["loss_history"]) == len(document)
    assert result.manifest["loss_history"] != pytest.approx(document, abs=1e-6)


def test_two_layer_net_document_needs_its_normal_init(weights_dir):
    normal = train("two-layer-net", weights_dir=weights_dir).metrics
    assert normal["initial_train_loss"] / normal["final_train_loss"] > 1e6
    default = train("two-layer-net", weights_dir=weights_dir, init="default").metrics
    assert default["final_train_loss"] > 0.5 * default["initial_train_loss"]


@pytest.mark.parametrize("recipe", ["document", "default"])
def test_linear_regression_recovers_the_line(weights_dir, recipe):
    metrics = train("linear-regression", recipe, weights_dir).metrics
    assert metrics["slope"] == pytest.approx(0.5, abs=0.05)
    assert metrics["intercept"] == pytest.approx(30, abs=0.5)


@pytest.mark.slow
def test_himmelblau_document_ends_where_the_document_says(weights_dir):
    points = train("himmelblau", weights_dir=weights_dir).metrics["points"]
    expected = [(3, 2), (3, 2), (-3.779, -3.283), (3.584, -1.848)]
    for point, target in zip(points, expected, strict=True):
        assert point == pytest.approx(target, abs=2e-3)


def test_himmelblau_default_finds_all_four_minima(weights_dir):
    metrics = train("himmelblau", "default", weights_dir).metrics
    assert metrics["minima_found"] == 4
    assert metrics["max_f"] < 1e-6


def test_same_seed_same_metrics_and_weights(weights_dir):
    first = train("two-layer-net", "default", weights_dir, epochs=50)
    second = train("two-layer-net", "default", weights_dir, epochs=50)
    assert (first.version, second.version) == (1, 2)
    assert first.metrics == second.metrics
    assert first.manifest["weights"]["sha256"] == second.manifest["weights"]["sha256"]
    third = train("two-layer-net", "default", weights_dir, epochs=50, seed=1)
    assert third.manifest["data"]["fingerprint"] != first.manifest["data"]["fingerprint"]


def test_manifest_records_how_the_weights_were_made(weights_dir):
    manifest = train("linear-regression", weights_dir=weights_dir, lr=0.02).manifest
    assert manifest["recipe"] == {
        "name": "document",
        "params": zoo.get_model("linear-regression").recipe("document", {"lr": 0.02}).to_dict(),
    }
    for key in (
        "seed",
        "metrics",
        "parameters",
        "torch",
        "torchvision",
        "device",
        "data",
        "weights",
        "created",
        "training_seconds",
    ):
        assert key in manifest
    assert manifest["data"]["fingerprint"].startswith("sha256:")
    assert manifest["parameters"] == 2 and manifest["device"] == "cpu"


def test_unavailable_device_fails_before_writing_anything(weights_dir, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(zoo.DeviceUnavailableError, match="CUDA is not available"):
        zoo.train("tiny-fnn", device="cuda", weights_dir=str(weights_dir))
    with pytest.raises(zoo.DeviceUnavailableError, match="expected auto, cpu, cuda or cuda:N"):
        zoo.train("tiny-fnn", device="tpu", weights_dir=str(weights_dir))
    assert not weights_dir.exists()


def test_missing_mnist_names_the_directory_and_files(tmp_path, weights_dir):
    with pytest.raises(zoo.DataNotFoundError) as info:
        zoo.train(
            "mnist-mlp",
            overrides={"epochs": 1},
            device="cpu",
            data_dir=str(tmp_path / "nowhere"),
            weights_dir=str(weights_dir),
        )
    message = str(info.value)
    assert str(tmp_path / "nowhere") in message and "train-images-idx3-ubyte" in message
    assert not (weights_dir / "mnist-mlp").exists()


def test_evaluate_recomputes_the_recorded_metrics(weights_dir):
    train("linear-regression", weights_dir=weights_dir)
    report = zoo.evaluate("linear-regression:1", weights_dir=str(weights_dir))
    assert report.metrics == report.recorded
