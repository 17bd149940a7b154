"""`zoo triton-repo`: every config.pbtxt parses with Triton's own ModelConfig schema, every model.onnx runs in
onnxruntime at the shapes its config declares, and bad input is refused with nothing written."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from typer.testing import CliRunner

import zoo
from zoo.cli.main import app
from zoo.exports.formats import FORMATS, TRITON_FORMATS, quiet_torchscript
from zoo.store.versions import RELEASED_WEIGHTS

runner = CliRunner()
NUMPY_TYPES = {model_config_pb2.TYPE_FP32: np.float32}


def triton_repo(*args):
    return runner.invoke(app, ["triton-repo", *map(str, args)])


@pytest.fixture
def released(tmp_path):
    """A weights root holding the released versions (exported to every format) as a user's own."""
    root = tmp_path / "weights"
    shutil.copytree(RELEASED_WEIGHTS, root)
    return root


def read_config(folder) -> model_config_pb2.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


# The formats every released version ships (the low-precision ones are exported by users: tests/test_lowprec.py).
SHIPPED = [fmt for fmt in TRITON_FORMATS if not FORMATS[fmt].lossy]


def test_every_config_parses_and_every_model_runs_at_its_config_shapes(released, tmp_path):
    repo = tmp_path / "repo"
    result = triton_repo(repo, *[f"--format={fmt}" for fmt in SHIPPED], "--weights-dir", released, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    model_of = {m["folder"]: m["model"] for m in report["models"]}
    format_of = {m["folder"]: m["format"] for m in report["models"]}
    folders = sorted(path.name for path in repo.iterdir())
    assert folders == sorted(model_of)
    assert {"mnist-mlp", "lenet", "linear-regression"} <= set(folders)
    for folder in folders:
        config = read_config(repo / folder)
        assert config.name == folder and config.max_batch_size == 256
        assert list(config.version_policy.specific.versions) == [1]
        assert config.platform == FORMATS[format_of[folder]].platform
        model_file = repo / folder / "1" / FORMATS[format_of[folder]].repository_file
        assert model_file.is_file()
        (tensor_in,), (tensor_out,) = config.input, config.output
        spec = zoo.get_model(model_of[folder])
        assert tuple(tensor_in.dims) == spec.input.features and tuple(tensor_out.dims) == spec.output.features
        for batch in (1, config.max_batch_size):
            x = np.random.default_rng(0).random((batch, *tensor_in.dims)).astype(NUMPY_TYPES[tensor_in.data_type])
            if config.platform == FORMATS["onnx"].platform:
                session = onnxruntime.InferenceSession(str(model_file))
                assert [i.name for i in session.get_inputs()] == [tensor_in.name]
                (y,) = session.run([tensor_out.name], {tensor_in.name: x})
            else:
                assert (tensor_in.name, tensor_out.name) == ("INPUT__0", "OUTPUT__0")
                with quiet_torchscript():
                    y = torch.jit.load(str(model_file))(torch.from_numpy(x)).detach().numpy()
            assert y.shape == (batch, *tensor_out.dims) and y.dtype == NUMPY_TYPES[tensor_out.data_type]


def test_named_versions_only_and_a_version_without_an_onnx_export_names_the_command(tmp_path, data_dir):
    root = tmp_path / "weights"
    for _ in range(2):
        zoo.train("linear-regression", "document", {"epochs": 5}, device="cpu", weights_dir=str(root))
    zoo.export("linear-regression:1", weights_dir=str(root))
    missing = triton_repo(tmp_path / "repo", "linear-regression", "--weights-dir", root)  # latest is 2
    assert missing.exit_code == 1
    assert "zoo export linear-regression:2 --format onnx" in missing.output
    assert not (tmp_path / "repo").exists()

    made = triton_repo(tmp_path / "repo", "linear-regression:1", "--weights-dir", root)
    assert made.exit_code == 0, made.output
    assert sorted(p.name for p in (tmp_path / "repo" / "linear-regression").iterdir()) == ["1", "config.pbtxt"]
    assert list(read_config(tmp_path / "repo" / "linear-regression").version_policy.specific.versions) == [1]


@pytest.mark.parametrize("args,code,message", [
    (["no-such-model"], 2, "unknown model 'no-such-model'"),
    (["himmelblau"], 2, "himmelblau cannot be exported"),
    (["mnist-mlp:9"], 2, "has no version 9"),
])
def test_bad_references_are_refused_in_one_line(args, code, message, released, tmp_path):
    result = triton_repo(tmp_path / "repo", *args, "--weights-dir", released)
    assert result.exit_code == code and message in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "repo").exists()


def test_a_non_empty_folder_is_refused_and_left_alone(released, tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "keep.txt").write_text("mine")
    result = triton_repo(repo, "--weights-dir", released)
    assert result.exit_code == 2 and "is not an empty folder" in result.output
    assert [p.name for p in repo.iterdir()] == ["keep.txt"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".repo.staging")]


def test_nothing_exported_says_how_to_export(weights_dir, tmp_path):
    result = triton_repo(tmp_path / "repo")
    assert result.exit_code == 1 and "zoo export" in result.output
