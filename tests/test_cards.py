"""Model cards: every trained version carries one with its figures, `zoo card` redraws it, `zoo compare` sets
versions side by side, and a figure that cannot be drawn never costs the version."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

import zoo
from zoo.cards.figures import CONFUSION_MATRIX, loss_curve
from zoo.cli.main import app
from zoo.store.versions import RELEASED_WEIGHTS

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def front_matter(readme: Path) -> dict:
    match = re.match(r"\A---\n(.*?)\n---\n", readme.read_text(), re.DOTALL)
    assert match, readme
    return yaml.safe_load(match.group(1))


def readable_size(path: Path) -> bool:
    width, height = Image.open(path).size
    return width >= 600 and height >= 400


def figure_bytes(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.png"))}


def test_a_trained_version_carries_its_card_and_figures(weights_dir):
    result = zoo.train("linear-regression", "document", weights_dir=str(weights_dir), device="cpu")
    folder = result.path
    card = result.manifest["card"]
    assert card["figures"] == ["loss.png", "fitted_line.png"] and card["failures"] == [] and not result.card_failures
    assert card["drawing_seconds"] > 0 and "training_seconds" in result.manifest
    assert all(readable_size(folder / name) for name in card["figures"])
    metadata = front_matter(folder / "README.md")
    assert metadata["license"] and metadata["datasets"] and metadata["tags"]
    results = metadata["model-index"][0]["results"][0]
    assert metadata["model-index"][0]["name"] == "linear-regression:1"
    assert results["task"]["type"] == "regression"
    assert {m["type"]: m["value"] for m in results["metrics"]}["slope"] == result.metrics["slope"]
    text = (folder / "README.md").read_text()
    for words in ("## Training recipe", "| `samples` | `11` |", "slope 0.5, intercept 30", "## How to use",
                  "zoo evaluate linear-regression:1", "/v1/models/linear-regression/versions/1/predict",
                  "onnxruntime.InferenceSession", "## Limits", "![", "(fitted_line.png)"):
        assert words in text, words


def test_zoo_card_redraws_the_same_bytes_as_training_drew(weights_dir):
    folder = zoo.train("tiny-fnn", "document", {"activation": "relu"}, weights_dir=str(weights_dir), device="cpu").path
    drawn = figure_bytes(folder) | {"README.md": (folder / "README.md").read_bytes()}
    for _ in range(2):
        result = cli("card", "tiny-fnn:1", "--json")
        assert result.exit_code == 0, result.output
        assert figure_bytes(folder) | {"README.md": (folder / "README.md").read_bytes()} == drawn
    report = json.loads(result.stdout)
    assert report["figures"] == ["loss.png"] and report["version"] == 1
    assert zoo.WeightsStore(weights_dir).manifest("tiny-fnn", 1)["card"]["drawing_seconds"] == report["drawing_seconds"]
    assert "activation=relu" in (folder / "README.md").read_text()


@pytest.mark.slow
def test_cards_drawn_in_separate_processes_are_the_same_bytes(weights_dir, tmp_path):
    """Deterministic across processes, not only within one: `zoo card` run in two fresh processes, with different
    hash seeds, on two copies of one version draws byte-identical README.md and figures."""
    import os
    import subprocess
    import sys

    source = zoo.train("linear-regression", "document", weights_dir=str(weights_dir), device="cpu").path
    drawn = []
    for seed in ("1", "2"):
        root = tmp_path / f"copy-{seed}"
        shutil.copytree(source, root / "linear-regression" / "1")
        for path in [*root.rglob("*.png"), root / "linear-regression" / "1" / "README.md"]:
            path.unlink()
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([str(Path(sys.executable).with_name("zoo")), "card", "linear-regression:1",
                               "--weights-dir", str(root)], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        folder = root / "linear-regression" / "1"
        drawn.append(figure_bytes(folder) | {"README.md": (folder / "README.md").read_bytes()})
    assert sorted(drawn[0]) == ["README.md", "fitted_line.png", "loss.png"]
    assert drawn[0] == drawn[1]
    assert drawn[0] == figure_bytes(source) | {"README.md": (source / "README.md").read_bytes()}


def test_a_figure_that_fails_never_costs_the_version(weights_dir, monkeypatch):
    """tiny-fnn has no categories, so a confusion matrix cannot be drawn for it: a real drawing failure."""
    spec = zoo.get_model("tiny-fnn")
    broken = dataclasses.replace(spec, figures=(loss_curve("step", first=0), CONFUSION_MATRIX))
    monkeypatch.setitem(zoo.core.registry._MODELS, "tiny-fnn", broken)
    trained = cli("train", "tiny-fnn", "--recipe", "document")
    assert trained.exit_code == 0, trained.output
    assert "warning" in trained.stderr and "confusion_matrix.png" in trained.stderr
    assert "zoo card tiny-fnn:1" in trained.stderr
    folder = weights_dir / "tiny-fnn" / "1"
    card = zoo.WeightsStore(weights_dir).manifest("tiny-fnn", 1)["card"]
    assert card["figures"] == ["loss.png"] and card["failures"][0].startswith("confusion_matrix.png: ")
    assert (folder / "model.safetensors").is_file() and not (folder / "confusion_matrix.png").exists()
    assert "Not drawn: confusion_matrix.png" in (folder / "README.md").read_text()
    assert zoo.evaluate("tiny-fnn:1").metrics["loss"] > 0

    before = {path.name: path.read_bytes() for path in folder.iterdir()}
    redrawn = cli("card", "tiny-fnn:1")
    assert redrawn.exit_code == 1 and "could not draw confusion_matrix.png" in redrawn.stderr
    assert {path.name: path.read_bytes() for path in folder.iterdir()} == before  # every figure or nothing

    monkeypatch.setitem(zoo.core.registry._MODELS, "tiny-fnn", spec)
    assert cli("card", "tiny-fnn:1").exit_code == 0
    card = zoo.WeightsStore(weights_dir).manifest("tiny-fnn", 1)["card"]
    assert card["failures"] == [] and "Not drawn" not in (folder / "README.md").read_text()
    assert not [path.name for path in folder.iterdir() if path.name.startswith(".card-")]


def test_compare_sets_versions_side_by_side(weights_dir, tmp_path):
    for lr in (1.0, 0.5):
        zoo.train("tiny-fnn", "document", {"lr": lr}, weights_dir=str(weights_dir), device="cpu")
    figure = tmp_path / "both.png"
    result = cli("compare", "tiny-fnn:1", "tiny-fnn:2", "--figure", figure, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["versions"] == [1, 2] and report["recipe_differences"] == {"lr": [1.0, 0.5]}
    assert len(report["metrics"]["loss"]) == 2 and report["recipe_shared"]["activation"] == "sigmoid"
    assert readable_size(figure)
    table = cli("compare", "tiny-fnn:1", "tiny-fnn", "--figure", figure)
    assert table.exit_code == 0 and "recipe differences" in table.stdout and "0.5" in table.stdout


@pytest.mark.parametrize("args,message", [
    (("card", "nope:1"), "unknown model 'nope'"),
    (("card", "tiny-fnn:7"), "no version 7"),
    (("card", "mnist-mlp:1"), "released version"),
    (("compare", "tiny-fnn:1", "linear-regression:1"), "expected versions of one model"),
    (("compare", "tiny-fnn:1"), "expected two or more versions"),
    (("compare", "tiny-fnn:1", "tiny-fnn:1"), "expected different versions"),
    (("compare", "tiny-fnn:1", "tiny-fnn:9"), "no version 9"),
])
def test_bad_card_and_compare_input_exits_2_in_one_line(weights_dir, monkeypatch, args, message):
    monkeypatch.delenv("ZOO_WEIGHTS_DIR")  # the default root: the user's own beside the released versions
    monkeypatch.setenv("XDG_DATA_HOME", str(weights_dir))
    zoo.train("tiny-fnn", "document", device="cpu")
    zoo.train("linear-regression", "document", device="cpu")
    result = cli(*args)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", ["mnist-mlp", "lenet", "linear-regression"])
def test_the_released_versions_carry_their_cards(name):
    folder = RELEASED_WEIGHTS / name / "1"
    card = zoo.WeightsStore(RELEASED_WEIGHTS).manifest(name, 1)["card"]
    assert card["failures"] == [] and set(card["figures"]) == {f.file for f in zoo.get_model(name).figures}
    assert all(readable_size(folder / figure) for figure in card["figures"])
    assert front_matter(folder / "README.md")["model-index"][0]["name"] == f"{name}:1"


def test_released_cards_are_what_zoo_card_draws_today(tmp_path, data_dir):
    """The committed card of a released version is exactly what `zoo card` draws from it now."""
    shutil.copytree(RELEASED_WEIGHTS / "linear-regression", tmp_path / "linear-regression")
    result = cli("card", "linear-regression:1", "--weights-dir", tmp_path)
    assert result.exit_code == 0, result.output
    for file in ("README.md", "loss.png", "fitted_line.png"):
        assert (tmp_path / "linear-regression" / "1" / file).read_bytes() == (
            RELEASED_WEIGHTS / "linear-regression" / "1" / file
        ).read_bytes()


def test_a_version_without_a_card_says_how_to_draw_one(weights_dir):
    folder = zoo.train("tiny-fnn", "document", weights_dir=str(weights_dir), device="cpu").path
    assert zoo.stored_card("tiny-fnn", 1).figures == ("loss.png",)
    (folder / "README.md").unlink()  # as a version trained before cards has none
    with pytest.raises(zoo.MissingCardError, match=r"has no model card .*zoo card tiny-fnn:1"):
        zoo.stored_card("tiny-fnn", None)


# What each card's first snippet prints: y at x = 1, and the first MNIST test digit (a 7) read from a photo of it.
@pytest.mark.parametrize("name,first_line", [("linear-regression", "tensor([[30."), ("mnist-mlp", "7")])
def test_the_python_on_a_released_card_runs_as_written(name, first_line, tmp_path, monkeypatch, data_dir, capsys):
    from serving import mnist_digits, photo_of

    monkeypatch.delenv("ZOO_WEIGHTS_DIR")  # the default root, where the released versions are seen
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.chdir(RELEASED_WEIGHTS / name / "1")  # the card's ONNX file is named relative to its folder
    digits, _ = mnist_digits(data_dir, 1)
    Path(tmp_path / "digit.png").write_bytes(photo_of(digits[0]))
    blocks = re.findall(r"```python\n(.*?)```", (RELEASED_WEIGHTS / name / "1" / "README.md").read_text(), re.DOTALL)
    assert len(blocks) == 2  # Python and ONNX Runtime
    for block in blocks:
        exec(compile(block.replace('"digit.png"', repr(str(tmp_path / "digit.png"))), "README.md", "exec"), {})
    assert capsys.readouterr().out.splitlines()[0].startswith(first_line)
