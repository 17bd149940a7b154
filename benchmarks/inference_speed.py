"""Inference speed of mnist-mlp and lenet: PyTorch eager vs TorchScript vs torch.export vs ONNX Runtime.

All backends run in this process on the same machine, on the same real MNIST test images, through the
zoo's runtimes (numpy in, numpy out, as the server calls them). Latency is the median of many batch-1
calls after warm-up; throughput is images per second at batch 256. Ratios are against eager, measured
in the same run. ONNX Runtime is measured as the zoo runs it (one intra-op thread below batch 16, one per core from
there) and with each thread count alone.

    python benchmarks/inference_speed.py [--weights-dir DIR] [--data-dir ../shared/data] [--runs 3000]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import zoo
from zoo.core.data import mnist_test_images, resolve_data_dir
from zoo.exports.formats import FORMATS, LOSSLESS_FORMATS, load_onnx

MODELS = ("mnist-mlp", "lenet")
BATCH_LATENCY, BATCH_THROUGHPUT = 1, 256


def median_seconds(predict: Callable[[np.ndarray], np.ndarray], x: np.ndarray, runs: int) -> float:
    """Median wall time of one call, after a tenth of `runs` (at least 20) warm-up calls."""
    for _ in range(max(20, runs // 10)):
        predict(x)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        predict(x)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def prepare(root: str, data_dir: str) -> None:
    """Give each model in `root` a version with every artifact, training (1 epoch) and exporting what is missing."""
    for name in MODELS:
        store = zoo.WeightsStore(root)
        if not store.versions(name):
            print(f"training {name} for 1 epoch into {root} (speed does not depend on accuracy)")
            zoo.train(name, overrides={"epochs": 1}, device="cpu", data_dir=data_dir, weights_dir=root)
        version = store.versions(name)[-1]
        # The lossless formats it compares; int8 and fp16 have their own script (lowprec_speed.py).
        missing = [fmt for fmt in LOSSLESS_FORMATS if fmt not in store.manifest(name, version).get("artifacts", {})]
        if missing:
            zoo.export(f"{name}:{version}", missing, weights_dir=root, data_dir=data_dir)


def backends(name: str, root: str) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """Each backend's predictor (what Runtime.run calls after checking its input), plus ONNX Runtime on every core."""
    runtimes = {
        backend: zoo.open_runtime(name, backend, weights_dir=root)
        for backend in ("torch", "torchscript", "pt2", "onnx")
    }
    predictors = {backend: runtime.predict for backend, runtime in runtimes.items()}
    cores = os.cpu_count() or 1
    onnx_file = Path(root) / name / str(runtimes["onnx"].version) / FORMATS["onnx"].file
    for threads in sorted({1, cores}):
        predictors[f"onnx, {threads} thread{'s' if threads > 1 else ''} only"] = load_onnx(onnx_file, threads=threads)
    return predictors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", help="weights root to use (exports what is missing); default: a temp one")
    parser.add_argument("--data-dir", help="data root holding MNIST/raw; default $ZOO_DATA_DIR")
    parser.add_argument("--runs", type=int, default=3000, help="timed batch-1 calls per backend")
    args = parser.parse_args()
    data_dir = str(resolve_data_dir(args.data_dir))
    with contextlib.ExitStack() as cleanup:
        root = args.weights_dir or cleanup.enter_context(tempfile.TemporaryDirectory(prefix="zoo-bench-"))
        prepare(root, data_dir)
        measure(root, data_dir, args.runs)


def measure(root: str, data_dir: str, runs: int) -> None:
    """Print the table: every backend of every model, batch-1 latency and batch-256 throughput."""
    images = mnist_test_images(resolve_data_dir(data_dir), BATCH_THROUGHPUT)[0].numpy()
    one, many = np.ascontiguousarray(images[:BATCH_LATENCY]), np.ascontiguousarray(images)
    load = os.getloadavg()[0]
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} torch threads, {os.cpu_count()} cores, "
        f"load average {load:.2f} at start"
    )
    header = (
        f"{'model':<10} {'backend':<18} {'batch 1 latency':>16} {'vs eager':>9} {'batch 256 img/s':>16} {'vs eager':>9}"
    )
    print(header)
    print("-" * len(header))
    for name in MODELS:
        eager_latency = eager_throughput = None
        for backend, predict in backends(name, root).items():
            latency = median_seconds(predict, one, runs)
            throughput = BATCH_THROUGHPUT / median_seconds(predict, many, max(50, runs // 20))
            eager_latency = eager_latency or latency
            eager_throughput = eager_throughput or throughput
            print(
                f"{name:<10} {backend:<18} {latency * 1e6:>13.1f} us {eager_latency / latency:>8.2f}x "
                f"{throughput:>16,.0f} {throughput / eager_throughput:>8.2f}x"
            )
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
