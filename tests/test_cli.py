"""The `zoo` CLI through Typer's CliRunner: each command, and each command's bad inputs."""

import json

import pytest
from serving import free_port
from typer.testing import CliRunner

from zoo.cli.main import app

runner = CliRunner()


def zoo(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_list_shows_every_model():
    result = zoo("list")
    assert result.exit_code == 0
    for name in ("two-layer-net", "mnist-mlp", "himmelblau", "lenet", "tiny-fnn", "linear-regression"):
        assert name in result.stdout


def test_list_json_is_machine_readable(weights_dir):
    rows = json.loads(zoo("list", "--json").stdout)
    assert [row["name"] for row in rows][:2] == ["himmelblau", "lenet"]
    assert all(row["versions"] == [] for row in rows)


def test_train_then_info_then_evaluate(weights_dir):
    trained = zoo("train", "linear-regression", "--recipe", "document", "--lr", "0.02", "--seed", 3)
    assert trained.exit_code == 0, trained.output
    assert "linear-regression version 1" in trained.stdout and "slope" in trained.stdout
    assert (weights_dir / "linear-regression" / "1" / "model.safetensors").is_file()

    info = json.loads(zoo("info", "linear-regression", "--json").stdout)
    assert info["parameters"] == 2
    assert info["versions"][0]["recipe"] == "document"

    report = json.loads(zoo("evaluate", "linear-regression:1", "--json").stdout)
    assert report["metrics"] == report["recorded"]
    assert report["version"] == 1


def test_train_overrides_reach_the_manifest(weights_dir):
    result = zoo("train", "tiny-fnn", "--epochs", 3, "--set", "activation=relu", "--set", "optimizer=adam", "--json")
    assert result.exit_code == 0, result.output
    params = json.loads(result.stdout)["recipe"]["params"]
    assert (params["epochs"], params["activation"], params["optimizer"]) == (3, "relu", "adam")


def test_info_shows_architecture_and_recipes():
    result = zoo("info", "lenet")
    assert result.exit_code == 0
    for text in ("Conv2d(1, 6", "81,194", "document", "default", "32x32"):
        assert text in result.stdout


@pytest.mark.parametrize(
    "args,code,message",
    [
        (("train", "resnet"), 2, "unknown model 'resnet'; expected one of: himmelblau, lenet"),
        (("info", "resnet"), 2, "unknown model 'resnet'"),
        (("evaluate", "resnet:1"), 2, "unknown model 'resnet'"),
        (("train", "tiny-fnn", "--recipe", "fast"), 2, "has no recipe 'fast'"),
        (("train", "tiny-fnn", "--set", "nesterov=1"), 2, "unknown recipe key 'nesterov'; valid keys: epochs (int)"),
        (("train", "tiny-fnn", "--set", "lr"), 2, "malformed override 'lr': expected key=value"),
        (("train", "tiny-fnn", "--set", "activation=tanh"), 2, "expected one of sigmoid, relu, got 'tanh'"),
        (("train", "tiny-fnn", "--epochs", "-3"), 2, "bad value for 'epochs'"),
        (("train", "tiny-fnn", "--device", "cuda:7"), 2, "cuda:7"),
        (("evaluate", "tiny-fnn:two"), 2, "malformed version 'two'"),
        (("evaluate", "tiny-fnn:0"), 2, "expected a whole number >= 1"),
        (("evaluate", "tiny-fnn:4"), 2, "'tiny-fnn' has no version 4"),
        (("evaluate", "tiny-fnn"), 2, "no trained versions of 'tiny-fnn'"),
        (("evaluate", "tiny-fnn", "--backend", "tensorrt"), 2, "tensorrt"),
    ],
)
def test_bad_input_exits_non_zero_with_a_clear_message(weights_dir, monkeypatch, args, code, message):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    result = zoo(*args)
    assert result.exit_code == code
    assert message in " ".join(result.output.split())
    assert not (weights_dir / "tiny-fnn").exists()


def test_unknown_version_names_the_versions_present(weights_dir):
    assert zoo("train", "tiny-fnn").exit_code == 0
    result = zoo("evaluate", "tiny-fnn:5")
    assert result.exit_code == 2
    assert "has no version 5" in result.output and "versions present: 1" in result.output


def test_missing_data_exits_1_and_writes_nothing(weights_dir, tmp_path):
    result = zoo("train", "mnist-mlp", "--epochs", 1, "--data-dir", tmp_path / "empty")
    assert result.exit_code == 1
    assert "MNIST is not in" in result.output and "t10k-labels-idx1-ubyte" in result.output
    assert not (weights_dir / "mnist-mlp").exists()


def test_version():
    result = zoo("--version")
    assert result.exit_code == 0 and result.stdout.startswith("zoo 0.") and "torch" in result.stdout


def test_the_default_root_is_the_users_folder_beside_the_released_versions(tmp_path, monkeypatch):
    """With no root named, a new version goes to the per-user folder, the repository's weights/ stays as it is,
    the new version is the latest, and the released one keeps its number."""
    from zoo.store.versions import RELEASED_WEIGHTS

    monkeypatch.delenv("ZOO_WEIGHTS_DIR")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    released = sorted(RELEASED_WEIGHTS.rglob("*"))
    trained = zoo("train", "linear-regression", "--epochs", 5, "--json")
    assert trained.exit_code == 0, trained.output
    assert json.loads(trained.stdout)["version"] == 2
    assert (tmp_path / "data" / "zoo" / "weights" / "linear-regression" / "2" / "manifest.json").is_file()
    assert sorted(RELEASED_WEIGHTS.rglob("*")) == released
    info = json.loads(zoo("info", "linear-regression", "--json").stdout)
    assert [v["version"] for v in info["versions"]] == [1, 2]
    assert json.loads(zoo("evaluate", "linear-regression:1", "--json").stdout)["version"] == 1
    refused = zoo("export", "linear-regression:1")
    assert refused.exit_code == 2 and "released version, read-only" in refused.output


@pytest.mark.parametrize("args, words", [
    (["--port", "80000"], "--port must be a TCP port from 1 to 65535, got 80000"),
    (["--port", "0"], "got 0"),
    (["--weights-dir", "/no/such/folder"], "weights root /no/such/folder does not exist"),
    (["--models", "himmelblau"], "himmelblau cannot be exported or run on inputs"),
    (["--models", "resnet"], "unknown model 'resnet'"),
])
def test_serve_refuses_bad_settings_in_one_line(args, words):
    # A free port, so that a server of the user's own on 8000 does not answer for the setting under test.
    port = [] if "--port" in args else ["--port", str(free_port())]
    result = zoo("serve", *port, *args)
    assert result.exit_code == 2
    assert words in " ".join(result.output.split()) and "Traceback" not in result.output


def test_serve_refuses_a_port_in_use():
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = zoo("serve", "--port", taken.getsockname()[1])
    assert result.exit_code == 2 and "Address already in use" in result.output
