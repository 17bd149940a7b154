"""Data-parallel training on CPU: `zoo train --nproc-per-node 2` (DDP over gloo) against one process.

Each trains mnist-mlp's document recipe (SGD lr 0.01, global batch 200, seed 0) for the same epochs through the
CLI, alternating, in the same run. Reported: the training time each manifest records (training only, rank 0's
clock) and the wall time of the whole command (start-up, torchrun's rendezvous, data load, evaluation).

    python benchmarks/ddp_speed.py [--data-dir ../shared/data] [--epochs 3] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from zoo.core.data import resolve_data_dir

ZOO = str(Path(sys.executable).with_name("zoo"))


def train_once(processes: int, threads: int | None, epochs: int, data_dir: str) -> tuple[float, float, float]:
    """(training seconds from the manifest, wall seconds of the command, test accuracy); `threads` sets
    OMP_NUM_THREADS (None: torch's default, one per core; torchrun gives each of several ranks 1)."""
    with tempfile.TemporaryDirectory() as weights:
        command = [ZOO, "train", "mnist-mlp", "--recipe", "document", "--epochs", str(epochs), "--device", "cpu",
                   "--data-dir", data_dir, "--weights-dir", weights, "--nproc-per-node", str(processes), "--json"]
        started = time.perf_counter()
        env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
        env.update({"OMP_NUM_THREADS": str(threads)} if threads else {})
        result = subprocess.run(command, capture_output=True, text=True, check=True, env=env)
        wall = time.perf_counter() - started
    manifest = json.loads(result.stdout)
    return manifest["training_seconds"], wall, manifest["metrics"]["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw (default: $ZOO_DATA_DIR)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=2, help="runs of each, alternating; the median is reported")
    args = parser.parse_args()
    data_dir = str(resolve_data_dir(args.data_dir))
    # (processes, OMP threads per process): the baseline first.
    setups = {(1, None): "1 process, default threads", (2, None): "2 processes (DDP, gloo), 1 thread each",
              (1, 1): "1 process, 1 thread"}
    runs: dict[tuple[int, int | None], list[tuple[float, float, float]]] = {setup: [] for setup in setups}
    for _ in range(args.repeats):
        for processes, threads in runs:
            runs[processes, threads].append(train_once(processes, threads, args.epochs, data_dir))
    print(f"{os.cpu_count()} cores, mnist-mlp document recipe, {args.epochs} epochs, global batch 200, "
          f"median of {args.repeats}")
    base_train = statistics.median(r[0] for r in runs[1, None])
    base_wall = statistics.median(r[1] for r in runs[1, None])
    for setup, results in runs.items():
        train = statistics.median(r[0] for r in results)
        wall = statistics.median(r[1] for r in results)
        print(f"{setups[setup]:40}: training {train:6.2f} s ({train / args.epochs:.2f} s/epoch, "
              f"{base_train / train:.2f}x), command {wall:6.2f} s ({base_wall / wall:.2f}x), "
              f"accuracy {results[0][2]:.2f}%")


if __name__ == "__main__":
    main()
