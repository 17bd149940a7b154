"""Errors know whose fault they are: the caller's mistakes exit 2 / answer 4xx, faults on disk exit 1 / answer 500."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import shutil
from pathlib import Path

import pytest
from safetensors import SafetensorError
from typer.testing import CliRunner

import zoo
from zoo.cli.main import app
from zoo.exports import formats
from zoo.store import versions as store

runner = CliRunner()


def zoo_cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def one_line_error(result, *words: str) -> None:
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert lines and lines[0].startswith("error:"), result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in " ".join(result.output.split()), result.output


@pytest.fixture
def trained(weights_dir) -> Path:
    assert zoo_cli("train", "linear-regression").exit_code == 0
    return weights_dir


def without(key: str):
    return lambda text: json.dumps({k: v for k, v in json.loads(text).items() if k != key})


# (how the manifest is spoiled, the words of the error, whether listings fail too: they read no recipe)
SPOILED = [
    (lambda text: text[: len(text) // 2], ["is not valid JSON"], True),
    (without("weights"), ["has no 'weights' key"], True),
    (lambda text: "[1, 2]", ["must hold a JSON object"], True),
    (lambda text: json.dumps({**json.loads(text), "metrics": [1]}), ["'metrics' must be a JSON dict"], True),
    (
        lambda text: json.dumps({**json.loads(text), "recipe": {"name": "fast", "params": {}}}),
        ["names recipe 'fast'"],
        False,
    ),
    (
        lambda text: json.dumps({**json.loads(text), "recipe": {"name": "default", "params": {"lr": "fast"}}}),
        ["recipe parameters that linear-regression does not accept"],
        False,
    ),
    (without("recipe"), ["has no 'recipe' key"], False),
]


@pytest.mark.parametrize("spoil, words, listings_fail", SPOILED)
@pytest.mark.parametrize(
    "command",
    [("evaluate", "linear-regression"), ("export", "linear-regression"), ("info", "linear-regression"), ("list",)],
)
def test_a_hand_edited_manifest_is_a_one_line_error_naming_the_file(trained, spoil, words, listings_fail, command):
    manifest = trained / "linear-regression" / "1" / "manifest.json"
    manifest.write_text(spoil(manifest.read_text()))
    result = zoo_cli(*command)
    if command[0] in ("info", "list") and not listings_fail:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 1
    one_line_error(result, str(manifest), *words)


def test_a_full_disk_during_train_names_the_path_and_leaves_no_version(weights_dir, monkeypatch):
    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(store, "save_file", full)
    result = zoo_cli("train", "tiny-fnn")
    assert result.exit_code == 1
    one_line_error(result, "could not write a new version of tiny-fnn", str(weights_dir / "tiny-fnn"), "No space left")
    assert listing(weights_dir) == ["tiny-fnn"]


def test_an_unwritable_weights_root_names_the_path(tmp_path):
    (tmp_path / "a-file").write_text("")
    root = tmp_path / "a-file" / "weights"
    result = zoo_cli("train", "tiny-fnn", "--weights-dir", root)
    assert result.exit_code == 1
    one_line_error(result, "could not write a new version of tiny-fnn", str(root / "tiny-fnn"), "Not a directory")


def test_a_full_disk_during_export_names_the_path_and_changes_nothing(trained, monkeypatch):
    before = {p: p.read_bytes() for p in (trained / "linear-regression" / "1").rglob("*") if p.is_file()}

    def full(model, interface, path, opset):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setitem(formats.FORMATS, "pt2", dataclasses.replace(formats.FORMATS["pt2"], export=full))
    result = zoo_cli("export", "linear-regression", "-f", "onnx", "-f", "pt2")
    assert result.exit_code == 1
    one_line_error(
        result,
        "could not write the export of linear-regression:1",
        str(trained / "linear-regression" / "1"),
        "No space left",
    )
    after = {p: p.read_bytes() for p in (trained / "linear-regression" / "1").rglob("*") if p.is_file()}
    assert after.keys() - {trained / "linear-regression" / "1" / ".manifest.lock"} == before.keys()
    assert all(after[p] == data for p, data in before.items())


def test_exporting_a_model_without_inputs_is_the_callers_mistake(weights_dir):
    result = zoo_cli("export", "himmelblau")
    assert result.exit_code == 2
    one_line_error(result, "himmelblau cannot be exported")


def test_export_without_format_writes_onnx(trained):
    result = zoo_cli("export", "linear-regression", "--json")
    assert result.exit_code == 0, result.output
    assert list(json.loads(result.output)["artifacts"]) == ["onnx"]


def test_every_error_kind_says_whose_fault_it_is():
    caller = {
        zoo.UnknownModelError,
        zoo.UnknownRecipeError,
        zoo.UnknownVersionError,
        zoo.InvalidOverrideError,
        zoo.DeviceUnavailableError,
        zoo.InvalidInputError,
        zoo.NotExportableError,
        zoo.InvalidSettingError,
        zoo.ReadOnlyVersionError,
        zoo.NotDataParallelError,
        zoo.ComparisonError,
        zoo.MissingCardError,
    }
    disk = {
        zoo.DataNotFoundError,
        zoo.IntegrityError,
        zoo.StorageError,
        zoo.MissingArtifactError,
        zoo.VerificationError,
        zoo.ExportError,
        zoo.DistributedRunError,
        zoo.DrawingError,
    }
    assert all(kind.caller_error for kind in caller) and not any(kind.caller_error for kind in disk)
    # Every kind the zoo defines is in one of the two sets: a new kind must say whose fault it is.
    kinds = {kind for kind in vars(zoo.core.errors).values()
             if isinstance(kind, type) and issubclass(kind, zoo.ZooError)}
    assert kinds - {zoo.ZooError} == caller | disk


def test_tampered_weights_found_while_serving_are_a_500_with_a_log_line(trained, caplog):
    from zoo.serve import create_app

    app = create_app({"WEIGHTS_DIR": str(trained)})
    runtime = app.extensions["zoo.models"].get("linear-regression")

    def tampered(x):
        raise zoo.IntegrityError(f"{trained}/linear-regression/1/model.safetensors does not match its manifest")

    runtime.predict = tampered
    with caplog.at_level(logging.ERROR, logger="zoo.serve"):
        response = app.test_client().post("/v1/models/linear-regression/predict", json={"x": 1})
    assert response.status_code == 500
    answer = response.get_json()["error"]
    assert "does not match its manifest" in answer
    assert str(trained) not in answer and "<server path>" in answer  # the client never learns the server's paths
    assert any(
        f"{trained}/linear-regression/1/model.safetensors does not match its manifest" in record.getMessage()
        for record in caplog.records
    )


def test_a_backend_is_scored_on_its_own_outputs(weights_dir, data_dir):
    """Give version 1 the ONNX file of version 2: its onnx score is version 2's, its torch score its own."""
    for seed in (0, 7):
        zoo.train("linear-regression", overrides={"seed": seed, "epochs": 20}, weights_dir=str(weights_dir))
        zoo.export(f"linear-regression:{seed and 2 or 1}", ["onnx"], weights_dir=str(weights_dir))
    first, second = weights_dir / "linear-regression" / "1", weights_dir / "linear-regression" / "2"
    shutil.copy(second / "model.onnx", first / "model.onnx")
    manifest = json.loads((first / "manifest.json").read_text())
    manifest["artifacts"]["onnx"]["sha256"] = store.sha256_file(first / "model.onnx")
    (first / "manifest.json").write_text(json.dumps(manifest))

    def scores(backend: str, version: int) -> dict:
        return zoo.evaluate(f"linear-regression:{version}", str(weights_dir), str(data_dir), backend=backend)["metrics"]

    assert scores("onnx", 1)["slope"] == pytest.approx(scores("torch", 2)["slope"], abs=1e-5)
    assert scores("onnx", 1)["intercept"] == pytest.approx(scores("torch", 2)["intercept"], abs=1e-5)
    assert abs(scores("torch", 1)["intercept"] - scores("torch", 2)["intercept"]) > 1e-3
