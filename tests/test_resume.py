"""Fine-tuning from a stored version, and runs that resume from their checkpoint after a kill with the same weights.

The slow tests SIGKILL real `zoo train` processes (one process, and two gloo ranks) once an epoch's checkpoint
is on disk, resume them with the same command plus --resume, and compare the weights' sha256 with a run that was
never stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from serving import ZOO
from typer.testing import CliRunner

import zoo
from zoo.cli.main import app
from zoo.training.trainer import CHECKPOINT_FILE, RUN_PREFIX

runner = CliRunner()


def cli(*args):
    return runner.invoke(app, [str(a) for a in args])


def sha256_of(root: Path, name: str, version: int) -> str:
    return json.loads((root / name / str(version) / "manifest.json").read_text())["weights"]["sha256"]


def run_folders(root: Path, name: str) -> list[Path]:
    return sorted((root / name).glob(f"{RUN_PREFIX}*")) if (root / name).is_dir() else []


class Interrupted(Exception):
    """Stands for a crash in the middle of a run."""


def crash_in_epoch(epoch: int):
    def on_progress(progress: zoo.Progress) -> None:
        if progress.epoch >= epoch:
            raise Interrupted

    return on_progress


@pytest.mark.parametrize("name,overrides", [("linear-regression", {"epochs": 40}), ("himmelblau", {"epochs": 30}),
                                            ("two-layer-net", {"epochs": 12})])
def test_a_crashed_run_resumes_to_the_same_weights_and_metrics(weights_dir, name, overrides):
    whole = zoo.train(name, overrides=overrides, device="cpu")
    with pytest.raises(Interrupted):
        zoo.train(name, overrides=overrides, device="cpu", on_progress=crash_in_epoch(5), checkpoint_every=2)
    (folder,) = run_folders(weights_dir, name)
    assert (folder / CHECKPOINT_FILE).is_file()
    said: list[tuple[int, int]] = []
    resumed = zoo.train(name, overrides=overrides, device="cpu", resume=True, checkpoint_every=2,
                        on_resume=lambda epoch, epochs: said.append((epoch, epochs)))
    assert said == [(4, overrides["epochs"])] and resumed.resumed_from == 4
    assert resumed.manifest["weights"]["sha256"] == whole.manifest["weights"]["sha256"]
    assert resumed.metrics == whole.metrics and resumed.manifest["loss_history"] == whole.manifest["loss_history"]
    assert run_folders(weights_dir, name) == []  # published: the checkpoint is gone


def test_resume_with_nothing_to_resume_is_a_one_line_caller_error(weights_dir):
    result = cli("train", "linear-regression", "--resume")
    assert result.exit_code == 2
    assert result.output.strip().startswith("error: nothing to resume: no checkpoint of a linear-regression run")
    assert len(result.output.strip().splitlines()) == 1 and not weights_dir.exists()


def test_other_settings_are_another_run_and_a_fresh_start_discards_the_old_checkpoint(weights_dir):
    with pytest.raises(Interrupted):
        zoo.train("linear-regression", overrides={"epochs": 30}, device="cpu", on_progress=crash_in_epoch(3))
    with pytest.raises(zoo.InvalidSettingError, match="nothing to resume"):
        zoo.train("linear-regression", overrides={"epochs": 30, "lr": 0.1}, device="cpu", resume=True)
    with pytest.raises(Interrupted):
        zoo.train("linear-regression", overrides={"epochs": 30}, device="cpu", on_progress=crash_in_epoch(2))
    (folder,) = run_folders(weights_dir, "linear-regression")
    assert zoo.train("linear-regression", overrides={"epochs": 30}, device="cpu", resume=True).resumed_from == 1


def test_fine_tuning_starts_from_the_parent_and_the_manifest_and_card_say_so(weights_dir):
    parent = zoo.train("linear-regression", device="cpu")
    # A learning rate too small to move anything: the child ends where the parent's weights began it.
    child = cli("train", "linear-regression", "--recipe", "document", "--from", "linear-regression:1", "--lr", 1e-12,
                "--epochs", 2, "--json")
    assert child.exit_code == 0, child.output
    manifest = json.loads(child.stdout)
    assert manifest["parent"] == {"ref": "linear-regression:1", "sha256": parent.manifest["weights"]["sha256"],
                                  "recipe": "default"}
    assert manifest["recipe"]["name"] == "document"
    first, second = (load_file(str(weights_dir / "linear-regression" / v / "model.safetensors")) for v in ("1", "2"))
    assert all(float((first[k] - second[k]).abs().max()) < 1e-6 for k in first)
    card = (weights_dir / "linear-regression" / "2" / "README.md").read_text()
    sha256 = parent.manifest["weights"]["sha256"]
    assert f"fine-tuned from `linear-regression:1` (its weights' sha256 `{sha256}`)" in card
    fresh = cli("train", "linear-regression", "--recipe", "document", "--lr", 1e-12, "--epochs", 2, "--json")
    assert "parent" not in json.loads(fresh.stdout)


def test_fine_tuning_from_another_architecture_is_a_one_line_caller_error(weights_dir):
    assert zoo.train("linear-regression", overrides={"epochs": 5}, device="cpu").version == 1
    result = cli("train", "tiny-fnn", "--from", "linear-regression:1")
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert "cannot fine-tune tiny-fnn from 'linear-regression:1': expected a version of tiny-fnn" in result.output
    assert cli("train", "linear-regression", "--from", "linear-regression:7").exit_code == 2


def start_training(*args: str) -> subprocess.Popen:
    return subprocess.Popen([str(ZOO), "train", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (torchrun starts each rank in a session of its own, so a process group
    would miss them)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
    tree, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def kill_after_first_checkpoint(process: subprocess.Popen, root: Path, name: str, timeout: float = 600) -> None:
    """SIGKILL the run, every rank of it, as soon as a checkpoint file is on disk (polled, no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not any((folder / CHECKPOINT_FILE).is_file() for folder in run_folders(root, name)):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    tree = process_tree(process.pid)
    for pid in tree:
        os.kill(pid, signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    while any(Path(f"/proc/{pid}").exists() and "zombie" not in _state(pid) for pid in tree[1:]):
        assert time.monotonic() < deadline, "a rank outlived its SIGKILL"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split("\n", 1)[0].lower()
    except (OSError, IndexError):
        return "zombie"


def finish(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ZOO), "train", *args], capture_output=True, text=True, timeout=900, check=False)


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [1, 2], ids=["one-process", "two-gloo-ranks"])
def test_a_killed_run_resumes_to_the_weights_of_one_never_stopped(tmp_path, data_dir, ranks):
    """mnist-mlp on real MNIST, 3 epochs: its default recipe (bf16, AdamW, one-cycle, dropout: every kind of state)
    on one process; the document recipe (SGD) on two DDP ranks, where rank 0 writes and both read."""
    recipe = ["--recipe", "default"] if ranks == 1 else ["--recipe", "document", "--nproc-per-node", "2"]
    common = ["mnist-mlp", *recipe, "--epochs", "3", "--device", "cpu", "--data-dir", str(data_dir), "--json"]
    whole, killed = tmp_path / "whole", tmp_path / "killed"
    assert finish(*common, "--weights-dir", str(whole)).returncode == 0

    process = start_training(*common, "--weights-dir", str(killed))
    kill_after_first_checkpoint(process, killed, "mnist-mlp")
    assert not (killed / "mnist-mlp" / "1").exists()
    resumed = finish(*common, "--weights-dir", str(killed), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    epoch = int(resumed.stderr.split("from its checkpoint after epoch ")[1].split()[0])
    assert 1 <= epoch < 3
    assert sha256_of(killed, "mnist-mlp", 1) == sha256_of(whole, "mnist-mlp", 1)
    metrics = [json.loads((root / "mnist-mlp" / "1" / "manifest.json").read_text())["metrics"]
               for root in (whole, killed)]
    assert metrics[0] == metrics[1]
    assert run_folders(killed, "mnist-mlp") == []
