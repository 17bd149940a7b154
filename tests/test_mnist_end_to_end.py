"""Real MNIST, real processes: the README's main job, and concurrent runs that must not clash."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ZOO = str(Path(sys.executable).with_name("zoo"))


def run_zoo(*args, env=None, **kwargs):
    return subprocess.run(
        [ZOO, *map(str, args)], capture_output=True, text=True, env={**os.environ, **(env or {})}, **kwargs
    )


@pytest.mark.slow
def test_one_epoch_of_mnist_mlp_through_the_cli_beats_90_percent(weights_dir, data_dir):
    trained = run_zoo(
        "train", "mnist-mlp", "--epochs", 1, "--device", "cpu", "--data-dir", data_dir, "--json", timeout=300
    )
    assert trained.returncode == 0, trained.stderr
    manifest = json.loads(trained.stdout)
    assert manifest["metrics"]["accuracy"] > 90.0
    assert manifest["metrics"]["total"] == 10000
    assert manifest["data"]["fingerprint"].startswith("sha256:")

    evaluated = run_zoo("evaluate", "mnist-mlp", "--json", timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads(evaluated.stdout)
    assert report["version"] == 1
    assert report["metrics"]["accuracy"] == manifest["metrics"]["accuracy"]


@pytest.mark.slow
def test_two_runs_started_at_once_get_different_versions(weights_dir):
    runs = [
        subprocess.Popen([ZOO, "train", "two-layer-net", "--epochs", "20", "--json"], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    versions = sorted(json.loads(run.communicate(timeout=300)[0])["version"] for run in runs)
    assert versions == [1, 2]
    assert sorted(p.name for p in (weights_dir / "two-layer-net").iterdir()) == ["1", "2"]


@pytest.mark.slow
def test_a_killed_run_leaves_no_version(weights_dir):
    run = subprocess.Popen(
        [ZOO, "train", "himmelblau", "--recipe", "document", "--epochs", "10000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        run.wait(timeout=8)
    except subprocess.TimeoutExpired:
        run.kill()
        run.wait()
    listing = run_zoo("info", "himmelblau", "--json")
    assert json.loads(listing.stdout)["versions"] == []
