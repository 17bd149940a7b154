"""Hostile folders and references: manifests that name files outside their version, symlinks out of it, pt2 archives
that would unpickle code, non-ASCII version numbers, and plugins that fail to import."""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from serving import ZOO
from typer.testing import CliRunner

import zoo
from zoo.cards.card import stored_card
from zoo.cli.main import app
from zoo.exports.formats import load_pt2
from zoo.store.versions import RELEASED_WEIGHTS, WeightsStore, parse_ref

runner = CliRunner()
OUTSIDE = "/etc/passwd"


@pytest.fixture
def version(weights_dir) -> Path:
    """The released linear-regression:1 (weights, card, figures, every export), copied into a root of the test's own."""
    folder = weights_dir / "linear-regression" / "1"
    shutil.copytree(RELEASED_WEIGHTS / "linear-regression" / "1", folder)
    return folder


def edit_manifest(folder: Path, change) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    change(manifest)
    (folder / "manifest.json").write_text(json.dumps(manifest))


def set_key(key: str, value):
    def change(manifest):
        node = manifest
        *parents, last = key.split(".")
        for part in parents:
            node = node[part]
        if last.endswith("]"):
            node[last.split("[")[0]][0] = value
        else:
            node[last] = value
    return change


# --- manifests name plain files inside their folder

@pytest.mark.parametrize("key", ["weights.file", "card.file", "card.figures[0]", "artifacts.onnx.file"])
@pytest.mark.parametrize("value", [OUTSIDE, "../2/model.safetensors", "sub/model.safetensors", "..", "", "a\\b", 7])
def test_a_manifest_naming_anything_but_a_plain_file_is_an_integrity_error(version, key, value):
    edit_manifest(version, set_key(key, value))
    with pytest.raises(zoo.IntegrityError) as caught:
        WeightsStore().manifest("linear-regression", 1)
    message = str(caught.value)
    assert str(version / "manifest.json") in message and key in message and repr(value) in message
    # Every reader goes through the manifest's reader: loading, runtimes and cards alike.
    for read in (lambda: zoo.load_model("linear-regression", 1), lambda: stored_card("linear-regression", 1),
                 lambda: zoo.open_runtime("linear-regression:1", backend="onnx")):
        with pytest.raises(zoo.IntegrityError, match="must be a plain file name"):
            read()


def test_the_card_never_shows_a_file_from_outside_the_version(version):
    edit_manifest(version, set_key("card.file", OUTSIDE))
    result = runner.invoke(app, ["card", "linear-regression:1"])  # redrawing reads the manifest first
    assert result.exit_code == 1 and "card.file must be a plain file name" in result.output
    with pytest.raises(zoo.IntegrityError, match=r"card\.file must be a plain file name.*'/etc/passwd'"):
        stored_card("linear-regression", 1)


def symlink_out(folder: Path, name: str, tmp_path: Path) -> Path:
    """Replace `name` in `folder` by a symlink to a copy of it outside the folder (same bytes, same sha256)."""
    outside = tmp_path / "outside" / name
    outside.parent.mkdir(exist_ok=True)
    shutil.copyfile(folder / name, outside)
    (folder / name).unlink()
    (folder / name).symlink_to(outside)
    return outside


def test_a_weights_file_that_is_a_symlink_out_of_the_folder_is_refused(version, tmp_path):
    outside = symlink_out(version, "model.safetensors", tmp_path)
    with pytest.raises(zoo.IntegrityError, match="weights.file 'model.safetensors' is a symlink to .*outside"):
        zoo.load_model("linear-regression", 1)
    assert str(outside) in str(pytest.raises(zoo.IntegrityError, WeightsStore().load, "linear-regression", 1).value)


@pytest.mark.parametrize("backend", ["onnx", "torchscript", "pt2"])
def test_an_artifact_that_is_a_symlink_out_of_the_folder_is_refused(version, tmp_path, backend):
    symlink_out(version, zoo.FORMATS[backend].file, tmp_path)
    with pytest.raises(zoo.IntegrityError, match=f"artifacts.{backend}.file .* is a symlink to .*outside"):
        zoo.open_runtime("linear-regression:1", backend=backend)


def test_a_symlink_that_stays_inside_the_folder_still_loads(version):
    (version / "model.onnx").rename(version / "graph.onnx")
    (version / "model.onnx").symlink_to("graph.onnx")
    runtime = zoo.open_runtime("linear-regression:1", backend="onnx")
    np.testing.assert_allclose(runtime.run(np.array([[0.0], [10.0]], np.float32)).ravel(), [30.05, 35.04], atol=0.01)


def test_a_figure_that_is_a_symlink_out_of_the_folder_is_never_served(version, tmp_path):
    from zoo.serve import create_app

    secret = tmp_path / "secret.png"
    secret.write_bytes(b"root:x:0:0:not a figure")
    (version / "loss.png").unlink()
    (version / "loss.png").symlink_to(secret)
    with pytest.raises(zoo.IntegrityError, match=r"card\.figures\[0\] 'loss.png' is a symlink to .*outside"):
        stored_card("linear-regression", 1)
    client = create_app({"WEIGHTS_DIR": str(version.parent.parent)}).test_client()
    for path in ("/models/linear-regression/versions/1/loss.png", "/models/linear-regression/versions/1"):
        answer = client.get(path)
        assert answer.status_code >= 400 and b"root:x" not in answer.data


# --- pt2 archives load without unpickling, or are refused

class Payload:
    """Unpickled, it writes its marker file: what a hostile pickle inside an archive would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "ran"))


def rewrite_archive(source: Path, target: Path, change: dict[str, bytes]) -> None:
    """Copy the zip at `source` to `target`, replacing or adding members (named below the archive's root folder)."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        root = old.namelist()[0].split("/", 1)[0]
        for info in old.infolist():
            inner = info.filename.split("/", 1)[1]
            if inner not in change:
                new.writestr(info, old.read(info))
        for inner, data in change.items():
            new.writestr(f"{root}/{inner}", data)


def hostile_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    torch.save(Payload(marker), buffer)
    return buffer.getvalue()


def hostile_archives(folder: Path, tmp_path: Path) -> dict[str, tuple[Path, str, Path]]:
    """name -> (a crafted .pt2 made from a real one, its hostile member, the marker its pickle writes)."""
    source, crafted = folder / "model.pt2", {}
    with zipfile.ZipFile(source) as archive:
        root = archive.namelist()[0].split("/", 1)[0]
        config = json.loads(archive.read(f"{root}/data/weights/model_weights_config.json"))
    pickled = {**config, "config": {key: {**value, "use_pickle": True} for key, value in config["config"].items()}}
    cases = {
        # Example inputs that fail the weights_only load: torch.export.load then unpickles them in full.
        "sample-inputs": ("data/sample_inputs/model.pt", hostile_pickle, {}),
        # A weight marked as pickled: torch.export.load reads it with torch.load(weights_only=False).
        "pickled-weight": ("data/weights/weight_0", hostile_pickle,
                           {"data/weights/model_weights_config.json": json.dumps(pickled).encode()}),
        # An opaque constant: torch.export.load reads it with pickle.loads.
        "opaque-constant": ("data/constants/opaque_obj_0", lambda marker: pickle.dumps(Payload(marker)),
                            {"data/constants/model_constants_config.json": json.dumps({"config": {"c": {
                                "path_name": "opaque_obj_0", "is_param": False, "use_pickle": True,
                                "tensor_meta": None}}}).encode()}),
    }
    for name, (member, payload, more) in cases.items():
        marker, target = tmp_path / f"{name}.ran", tmp_path / f"{name}.pt2"
        rewrite_archive(source, target, {member: payload(marker), **more})
        crafted[name] = (target, member, marker)
    return crafted


def test_hostile_pt2_archives_are_refused_before_anything_is_unpickled(version, tmp_path):
    for name, (path, member, marker) in hostile_archives(version, tmp_path).items():
        with zipfile.ZipFile(path) as archive:
            data = archive.read(next(n for n in archive.namelist() if n.endswith(f"/{member}")))
        # The payload is live: unpickled as torch.export.load would, it runs.
        torch.load(io.BytesIO(data), weights_only=False) if name != "opaque-constant" else pickle.loads(data)
        assert marker.read_text() == "ran"
        marker.unlink()
        with pytest.raises(zoo.IntegrityError, match="is refused: .*without unpickling"):
            load_pt2(path)
        assert not marker.exists(), name


def test_a_pt2_archive_in_another_layout_is_refused_not_loaded_by_the_legacy_path(tmp_path):
    legacy = tmp_path / "legacy.pt2"
    with zipfile.ZipFile(legacy, "w") as archive:  # torch 2.7's layout, whose loader falls back to weights_only=False
        archive.writestr("version", "8.0")
        archive.writestr("serialized_state_dict.pt", hostile_pickle(tmp_path / "legacy.ran"))
    with pytest.raises(zoo.IntegrityError, match="not under one root folder"):
        load_pt2(legacy)
    (tmp_path / "not-a-zip.pt2").write_bytes(b"\x80\x04 a pickle, not a zip")
    with pytest.raises(zoo.IntegrityError, match="not a zip archive"):
        load_pt2(tmp_path / "not-a-zip.pt2")
    assert not (tmp_path / "legacy.ran").exists()


def test_the_zoos_own_pt2_exports_still_load_and_match_eager(version):
    runtime = zoo.open_runtime("linear-regression:1", backend="pt2")
    eager = zoo.open_runtime("linear-regression:1", backend="torch")
    x = np.array([[0.0], [4.0], [10.0]], np.float32)
    np.testing.assert_allclose(runtime.run(x), eager.run(x), atol=1e-6)


# --- versions are ASCII digits

@pytest.mark.parametrize("version", ["²", "١", "١٢", "01", "0", "+1", " 1", "1_0", "٣", "1.0"])
def test_versions_in_references_are_ascii_digits_without_a_leading_zero(version):
    with pytest.raises(zoo.UnknownVersionError, match="malformed version .*ASCII digits"):
        parse_ref(f"mnist-mlp:{version}")


def test_version_folders_named_in_other_digits_are_not_versions(version):
    for name in ("²", "١", "01", "007"):
        shutil.copytree(version, version.parent / name)
    assert WeightsStore().versions("linear-regression") == [1]
    assert zoo.load_model("linear-regression").version == 1


@pytest.mark.parametrize("args", [("compare", "mnist-mlp:²", "mnist-mlp:1"),
                                  ("compare", "mnist-mlp:١", "mnist-mlp:1"),
                                  ("evaluate", "mnist-mlp:²"), ("export", "linear-regression:١"),
                                  ("card", "lenet:01"), ("triton-repo", "repo", "lenet:²")])
def test_every_command_taking_a_reference_refuses_other_digits_in_one_line(args, tmp_path):
    result = subprocess.run([str(ZOO), *args], cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: malformed version") and result.stderr.count("\n") == 1, result.stderr


def test_recipe_numbers_on_the_command_line_are_ascii(weights_dir):
    result = runner.invoke(app, ["train", "linear-regression", "--set", "epochs=١٠"])
    assert result.exit_code == 2 and "bad value for 'epochs'" in result.output
    assert not weights_dir.exists() or not any(weights_dir.iterdir())


# --- plugins that fail to import

def broken_plugins(folder: Path) -> dict[str, str]:
    (folder / "raising_plugin.py").write_text("import zoo\nraise RuntimeError('the plugin is broken\\nsecond line')\n")
    (folder / "syntax_plugin.py").write_text("def oops(:\n")
    (folder / "good_plugin.py").write_text(
        (RELEASED_WEIGHTS.parent / "zoo" / "models" / "tiny_fnn.py").read_text()
        .replace('name="tiny-fnn"', 'name="good-fnn"').replace("def tiny_fnn()", "def good_fnn()"))
    # Registers a model, then fails: the half-imported module's model is left out too.
    (folder / "half_plugin.py").write_text(
        (folder / "good_plugin.py").read_text().replace("good-fnn", "half-fnn")
        .replace("def good_fnn()", "def half_fnn()")
        + "\nraise ImportError('half way')\n")
    return {**os.environ, "PYTHONPATH": str(folder),
            "ZOO_MODEL_MODULES": "raising_plugin, no_such_plugin, syntax_plugin, half_plugin, good_plugin"}


@pytest.mark.slow
def test_a_plugin_that_fails_to_import_is_one_warning_line_and_the_rest_of_the_zoo_works(tmp_path, weights_dir):
    env = broken_plugins(tmp_path)
    expected = ["plugin module 'raising_plugin' (in $ZOO_MODEL_MODULES) failed to import and is left out: "
                "RuntimeError: the plugin is broken",
                "plugin module 'no_such_plugin' (in $ZOO_MODEL_MODULES) failed to import and is left out: "
                "ModuleNotFoundError: No module named 'no_such_plugin'",
                "plugin module 'syntax_plugin' (in $ZOO_MODEL_MODULES) failed to import and is left out: SyntaxError",
                "plugin module 'half_plugin' (in $ZOO_MODEL_MODULES) failed to import and is left out: "
                "ImportError: half way"]

    def run(*args, imports_models=True):
        result = subprocess.run([str(ZOO), *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                                check=False)
        assert "Traceback" not in result.stderr, result.stderr
        warnings = [line for line in result.stderr.splitlines() if line.startswith("warning: plugin")]
        if not imports_models:  # a fast start imports no model module, so it meets no broken plugin
            assert warnings == [], warnings
            return result
        assert len(warnings) == 4
        assert all(line.startswith(f"warning: {want}") for line, want in zip(warnings, expected, strict=True))
        return result

    version = run("--version", imports_models=False)
    assert version.returncode == 0 and version.stdout.startswith("zoo ")
    listing = run("list", "--json")
    assert listing.returncode == 0
    names = {row["name"] for row in json.loads(listing.stdout)}
    assert "good-fnn" in names and "tiny-fnn" in names and "half-fnn" not in names
    trained = run("train", "good-fnn", "--json")
    assert trained.returncode == 0 and json.loads(trained.stdout)["model"] == "good-fnn"
    unknown = run("info", "half-fnn")
    assert unknown.returncode == 2
    error = [line for line in unknown.stderr.splitlines() if line.startswith("error:")]
    assert len(error) == 1 and "unknown model 'half-fnn'" in error[0]
    assert "plugin module 'half_plugin' (in $ZOO_MODEL_MODULES) failed to import (ImportError: half way)" in error[0]


def test_failed_plugins_are_listed_in_python_with_their_error(tmp_path):
    env = broken_plugins(tmp_path)
    script = (
        "import json, zoo.core.registry as r; print(json.dumps(r.failed_plugins()));"
        " print('good-fnn' in r.list_models())"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=True
    )
    failed, good = result.stdout.splitlines()
    assert json.loads(failed)["module 'raising_plugin' (in $ZOO_MODEL_MODULES)"] == "RuntimeError: the plugin is broken"
    assert good == "True"


# --- training ranks never import from the current folder

SHADOWS = {"torch.py": "torch", "zoo.py": "zoo"}
MODEL_FOR_RANKS = "linear-regression"


def shadowing_folder(folder: Path) -> Path:
    """A folder whose torch.py and zoo.py, if ever imported, write a marker and stop the process."""
    for file, name in SHADOWS.items():
        marker = str(folder / f"{name}.imported")
        (folder / file).write_text(
            f"from pathlib import Path\nPath({marker!r}).write_text('x')\n"
            f"raise SystemExit('the {file} of the current folder was imported')\n"
        )
    return folder


@pytest.mark.parametrize("has_safe_path", [True, False], ids=["-P", "python-3.10-bootstrap"])
def test_a_rank_command_never_imports_from_the_current_folder(tmp_path, has_safe_path):
    from zoo.training.distributed import rank_command

    folder = shadowing_folder(tmp_path)
    command = rank_command("zoo.cli.main", ["--version"], has_safe_path=has_safe_path)
    assert ("-P" in command) == has_safe_path
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0 and result.stdout.startswith("zoo "), result.stderr
    assert not list(folder.glob("*.imported"))
    # The same command without the guard does import them: the folder really is hostile.
    plain = subprocess.run(
        [sys.executable, "-m", "zoo.cli.main", "--version"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert plain.returncode != 0 and "of the current folder was imported" in plain.stderr


@pytest.mark.slow
def test_training_ranks_started_from_a_hostile_folder_import_the_real_torch_and_zoo(tmp_path, weights_dir):
    folder = shadowing_folder(tmp_path)
    result = subprocess.run(
        [str(ZOO), "train", MODEL_FOR_RANKS, "--device", "cpu", "--nproc-per-node", "2", "--json"],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout)["distributed"]["world_size"] == 2
    assert not list(folder.glob("*.imported"))
    assert WeightsStore(weights_dir).versions(MODEL_FOR_RANKS) == [1]
