"""Data-parallel training: real gloo process groups started by torchrun, compared with one process.

The slow tests run real processes on real MNIST (one epoch), so they take a minute or two on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from serving import ZOO, ReservedPort
from typer.testing import CliRunner

import zoo
from zoo.cli.main import app

PYTHON = sys.executable


def run_zoo(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(ZOO), *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False)


def max_weight_difference(a: Path, b: Path) -> float:
    first, second = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
    assert first.keys() == second.keys()
    return max(float((first[key] - second[key]).abs().max()) for key in first)


def versions_in(root: Path, name: str) -> list[str]:
    folder = root / name
    return sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []


@pytest.mark.parametrize("model", ["himmelblau", "tiny-fnn"])
def test_models_whose_training_is_not_data_parallel_refuse_several_processes(model, weights_dir):
    result = CliRunner().invoke(app, ["train", model, "--nproc-per-node", "2"])
    assert result.exit_code == 2
    assert f"{model} cannot train on 2 processes" in result.output and "--nproc-per-node 1" in result.output
    assert not weights_dir.exists()


def test_a_global_batch_smaller_than_the_world_is_refused(weights_dir):
    result = CliRunner().invoke(app, ["train", "linear-regression", "--batch-size", "1", "--nproc-per-node", "2"])
    assert result.exit_code == 2 and "batch size 1 cannot be split over 2 processes" in result.output


def test_the_spec_declares_which_models_train_data_parallel():
    declared = {name: zoo.get_model(name).data_parallel for name in zoo.list_models()}
    assert declared == {"himmelblau": False, "tiny-fnn": False, "lenet": True, "mnist-mlp": True,
                        "linear-regression": True, "two-layer-net": True}


@pytest.mark.parametrize("batch,world", [(200, 2), (11, 2), (256, 3), (5, 4)])
def test_shards_cover_the_batch_and_their_weights_make_the_mean(batch, world):
    """Every item in exactly one shard; sum over ranks of weight * shard mean / world == the batch mean."""
    values = torch.randn(batch, dtype=torch.float64)
    index = torch.randperm(batch)
    parts = [zoo.World(rank, world).shard(index) for rank in range(world)]
    assert sorted(torch.cat([part for part, _ in parts]).tolist()) == list(range(batch))
    combined = sum(weight * values[part].mean() for part, weight in parts) / world
    assert float(combined) == pytest.approx(float(values.mean()), abs=1e-12)


@pytest.mark.slow
def test_two_gloo_processes_match_one_process_on_mnist(tmp_path, data_dir):
    """mnist-mlp's document recipe (SGD, no dropout), one epoch, global batch 200, seed 0: 1 process vs 2."""
    single, double = tmp_path / "one", tmp_path / "two"
    common = ["train", "mnist-mlp", "--recipe", "document", "--epochs", 1, "--device", "cpu", "--data-dir", data_dir]
    one = run_zoo(*common, "--weights-dir", single, "--json")
    assert one.returncode == 0, one.stderr
    two = run_zoo(*common, "--weights-dir", double, "--nproc-per-node", 2, "--json")
    assert two.returncode == 0, two.stderr
    manifest = json.loads(two.stdout)
    assert manifest["distributed"] == {
        "world_size": 2,
        "backend": "gloo",
        "global_batch": 200,
        "per_rank_batch": [100, 100],
    }
    assert versions_in(double, "mnist-mlp") == ["1"]  # only rank 0 published
    # DDP averages the two ranks' gradients of their 100-image means: the gradient of the 200-image mean, up to
    # float summation order (measured: 3e-5 after 300 steps).
    assert max_weight_difference(single / "mnist-mlp" / "1", double / "mnist-mlp" / "1") < 1e-4
    accuracy = (json.loads(one.stdout)["metrics"]["accuracy"], manifest["metrics"]["accuracy"])
    assert abs(accuracy[0] - accuracy[1]) < 0.5
    assert manifest["metrics"]["total"] == 10000  # scored once, on the whole test set


@pytest.mark.slow
@pytest.mark.parametrize(
    "model,recipe,overrides,shards",
    [
        ("linear-regression", "document", [], [6, 5]),  # mean loss, 11 samples: uneven shards
        ("two-layer-net", "document", ["--epochs", 50], [32, 32]),  # loss summed over the batch
    ],
)
def test_torchrun_starting_the_train_entry_directly_matches_one_process(model, recipe, overrides, shards, tmp_path):
    """As a SLURM or Kubernetes job would: torchrun (or anything setting RANK, WORLD_SIZE) runs `zoo train` itself."""
    single, double = tmp_path / "one", tmp_path / "two"
    args = ["train", model, "--recipe", recipe, "--device", "cpu", *overrides]
    assert run_zoo(*args, "--weights-dir", single).returncode == 0
    direct = subprocess.run(
        [
            PYTHON,
            "-m",
            "torch.distributed.run",
            "--nproc-per-node=2",
            "--standalone",  # a c10d rendezvous on localhost:0: torchrun binds a free port itself, none is handed in
            "-m",
            "zoo.cli.main",
            *map(str, args),
            "--weights-dir",
            str(double),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert direct.returncode == 0, direct.stderr
    manifest = json.loads(direct.stdout)  # rank 0 alone printed it
    assert manifest["distributed"]["per_rank_batch"] == shards
    assert versions_in(double, model) == ["1"]
    assert max_weight_difference(single / model / "1", double / model / "1") < 1e-5


def rank_pid(parent: int, local_rank: int, deadline: float) -> int:
    """The pid of the launched process with this LOCAL_RANK among `parent`'s children."""
    while time.monotonic() < deadline:
        for child in Path(f"/proc/{parent}/task/{parent}/children").read_text().split():
            try:
                environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            except (FileNotFoundError, ProcessLookupError):
                continue
            if f"LOCAL_RANK={local_rank}".encode() in environ:
                return int(child)
        time.sleep(0.2)
    raise AssertionError(f"no rank {local_rank} process started under {parent}")


@pytest.mark.slow
def test_a_killed_rank_fails_the_run_and_publishes_nothing(tmp_path, data_dir):
    """SIGKILL one rank mid-run (what the OOM killer does): exit 1, the message names the rank, no version."""
    root = tmp_path / "weights"
    command = [
        str(ZOO),
        "train",
        "mnist-mlp",
        "--recipe",
        "document",
        "--epochs",
        "50",
        "--device",
        "cpu",
        "--data-dir",
        str(data_dir),
        "--weights-dir",
        str(root),
        "--nproc-per-node",
        "2",
    ]
    launcher = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        victim = rank_pid(launcher.pid, 1, time.monotonic() + 60)
        # Into training: the run's first checkpoint (after epoch 1) is the event, not a fixed 8 s sleep.
        deadline = time.monotonic() + 240
        while not list((root / "mnist-mlp").glob(".run-*/checkpoint.pt")):
            assert launcher.poll() is None, launcher.communicate()[1]
            assert time.monotonic() < deadline, "no checkpoint after 240 s"
            time.sleep(0.05)
        os.kill(victim, signal.SIGKILL)
        _, stderr = launcher.communicate(timeout=120)
    finally:
        launcher.kill()
    assert launcher.returncode == 1, stderr
    assert "error: rank 1 of 2 failed: killed by signal 9 (SIGKILL)" in stderr
    assert "no version was published" in stderr
    # Nothing but the run's own folder, kept so that `--resume` can continue it.
    assert [entry for entry in versions_in(root, "mnist-mlp") if not entry.startswith(".run-")] == []
    assert zoo.WeightsStore(root).versions("mnist-mlp") == []


@pytest.mark.slow
def test_a_node_without_the_data_fails_with_its_error_on_two_nodes(tmp_path, data_dir):
    """Two machines' commands (here on one host): node 1's data folder is empty, as on a machine never given MNIST."""
    # Node 1 must be told node 0's port, so torchrun cannot pick its own: the port is held for this run alone.
    reserved = ReservedPort()
    root, empty, port = tmp_path / "weights", tmp_path / "empty", reserved.port
    empty.mkdir()
    common = [
        str(ZOO),
        "train",
        "mnist-mlp",
        "--recipe",
        "document",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--weights-dir",
        str(root),
        "--nnodes",
        "2",
        "--master-addr",
        "127.0.0.1",
        "--master-port",
        str(port),
    ]
    nodes = [
        subprocess.Popen(
            [*common, "--node-rank", "0", "--data-dir", str(data_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
        subprocess.Popen(
            [*common, "--node-rank", "1", "--data-dir", str(empty)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ),
    ]
    try:
        outputs = [node.communicate(timeout=240)[1] for node in nodes]
    finally:
        reserved.release()
    assert [node.returncode for node in nodes] == [1, 1], outputs
    assert f"error: rank 1 of 2 failed: DataNotFoundError: MNIST is not in {empty}" in outputs[1]
    assert "error: rank 0 of 2 failed" in outputs[0]  # its peer vanished; its log shows gloo saying so
    assert versions_in(root, "mnist-mlp") == []
