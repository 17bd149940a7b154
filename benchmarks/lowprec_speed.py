"""What int8 and float16 ONNX files cost and save against the float32 ONNX file: size, speed, accuracy.

For mnist-mlp and lenet (the released version 1, copied into a temp root and exported with `zoo.export`), each file
is run through the zoo's own ONNX predictor (zoo.exports.formats.load_onnx: one intra-op thread below batch 16, one
per core from there), in this process, on the same real MNIST test images. Latency is the median of many batch-1
calls after warm-up; throughput is images per second at batch 256; ratios are against the float32 file measured in
the same run. The files take turns in 30 rounds, and beside wall time each figure is also given as CPU time of a
one-thread session (images per CPU-second at batch 256), which waiting for a core on a loaded machine does not
inflate.
Accuracy is on the 10,000 test images. A second table quantizes int8 with per-tensor and per-channel weights and
with 64, 256 and 1024 calibration images, to show what the defaults (zoo/exports/quantize.py) were chosen from.

    python benchmarks/lowprec_speed.py [--data-dir ../shared/data] [--runs 3000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime
import torch

import zoo
from zoo.core.data import load_mnist, resolve_data_dir
from zoo.exports.formats import FORMATS, load_onnx
from zoo.exports.quantize import draw_calibration, quantize_int8
from zoo.store.versions import RELEASED_WEIGHTS

MODELS = ("mnist-mlp", "lenet")
COMPARED = ("onnx", "onnx-int8", "onnx-fp16")
BATCH_LATENCY, BATCH_THROUGHPUT = 1, 256


def interleaved(predictors: dict[str, Callable[[np.ndarray], np.ndarray]], x: np.ndarray, calls: int,
                rounds: int) -> dict[str, tuple[float, float]]:
    """Median wall time and median calling-thread CPU time of one call of each predictor.

    The predictors take turns, `calls` calls each per round, so a burst of load from other jobs falls on all of
    them alike instead of on whichever ran during it; the CPU time of a one-thread session does not count the time
    the thread waited for a core, so it holds under load.
    """
    samples: dict[str, tuple[list[float], list[float]]] = {key: ([], []) for key in predictors}
    for predict in predictors.values():
        for _ in range(max(20, calls)):
            predict(x)
    for _ in range(rounds):
        for key, predict in predictors.items():
            walls, cpus = samples[key]
            for _ in range(calls):
                wall, cpu = time.perf_counter(), time.thread_time()
                predict(x)
                cpus.append(time.thread_time() - cpu)
                walls.append(time.perf_counter() - wall)
    return {key: (statistics.median(walls), statistics.median(cpus)) for key, (walls, cpus) in samples.items()}


def accuracy(predict: Callable[[np.ndarray], np.ndarray], images: np.ndarray, labels: np.ndarray) -> float:
    logits = np.concatenate([predict(images[i:i + 2000]) for i in range(0, len(images), 2000)])
    return 100.0 * float((logits.argmax(1) == labels).mean())


def speed_and_size(root: Path, images: np.ndarray, labels: np.ndarray, runs: int) -> None:
    one, many = np.ascontiguousarray(images[:BATCH_LATENCY]), np.ascontiguousarray(images[:BATCH_THROUGHPUT])
    header = (f"{'model':<10} {'format':<10} {'size':>9} {'vs f32':>7} {'batch 1 wall':>13} {'vs f32':>7} "
              f"{'1 thread CPU':>13} {'vs f32':>7} {'b256 img/s':>11} {'vs f32':>7} {'1 thread CPU':>13} "
              f"{'vs f32':>7} {'accuracy':>9} {'max |diff|':>11}")
    print(header)
    print("-" * len(header))
    for name in MODELS:
        folder = root / name / "1"
        artifacts = zoo.WeightsStore(root).manifest(name, 1)["artifacts"]
        paths = {fmt: folder / FORMATS[fmt].file for fmt in COMPARED}
        zoo_setting = {fmt: load_onnx(path) for fmt, path in paths.items()}  # batch 256 on one thread per core
        one_thread = {fmt: load_onnx(path, threads=1) for fmt, path in paths.items()}
        small = interleaved(zoo_setting, one, max(1, runs // 30), 30)  # batch 1: the one-thread session either way
        large = interleaved(zoo_setting, many, max(1, runs // 600), 30)
        large_cpu = interleaved(one_thread, many, max(1, runs // 600), 30)
        base = COMPARED[0]
        for fmt in COMPARED:
            size = paths[fmt].stat().st_size
            latency, latency_cpu = small[fmt]
            throughput, throughput_cpu = BATCH_THROUGHPUT / large[fmt][0], BATCH_THROUGHPUT / large_cpu[fmt][1]
            diff = artifacts[fmt]["verification"]["max_abs_diff"]
            print(f"{name:<10} {fmt:<10} {size / 1024:>6,.0f} KiB {size / paths[base].stat().st_size:>6.2f}x "
                  f"{latency * 1e6:>10.1f} us {small[base][0] / latency:>6.2f}x "
                  f"{latency_cpu * 1e6:>10.1f} us {small[base][1] / latency_cpu:>6.2f}x "
                  f"{throughput:>11,.0f} {large[base][0] / large[fmt][0]:>6.2f}x "
                  f"{throughput_cpu:>13,.0f} {large_cpu[base][1] / large_cpu[fmt][1]:>6.2f}x "
                  f"{accuracy(zoo_setting[fmt], images, labels):>8.2f}% {diff:>11.3g}")


def int8_choices(root: Path, data_dir: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """int8 accuracy and size with per-tensor or per-channel weights and with fewer or more calibration images."""
    splits = load_mnist(data_dir, torch.device("cpu"))
    header = f"{'model':<10} {'weights':<12} {'calibration':>12} {'size':>9} {'accuracy':>9} {'float32':>8}"
    print(header)
    print("-" * len(header))
    with tempfile.TemporaryDirectory(prefix="zoo-int8-choices-") as scratch:
        for name in MODELS:
            source = root / name / "1" / FORMATS["onnx"].file
            float32 = accuracy(load_onnx(source), images, labels)
            seed = zoo.WeightsStore(root).manifest(name, 1)["seed"]
            for per_channel in (False, True):
                for count in (64, 256, 1024):
                    out = Path(scratch) / f"{name}-{per_channel}-{count}.onnx"
                    calibration = draw_calibration(splits.train_x, seed, splits.description, count)
                    quantize_int8(source, out, "image", calibration, per_channel=per_channel)
                    print(f"{name:<10} {'per-channel' if per_channel else 'per-tensor':<12} {count:>12} "
                          f"{out.stat().st_size / 1024:>6,.0f} KiB {accuracy(load_onnx(out), images, labels):>8.2f}% "
                          f"{float32:>7.2f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", help="data root holding MNIST/raw; default $ZOO_DATA_DIR")
    parser.add_argument("--runs", type=int, default=3000, help="timed batch-1 calls per file")
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data_dir)
    splits = load_mnist(data_dir, torch.device("cpu"))
    images, labels = splits.test_x.numpy(), splits.test_y.numpy()
    print(f"onnxruntime {onnxruntime.__version__}, torch {torch.__version__}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f} at start")
    with tempfile.TemporaryDirectory(prefix="zoo-bench-lowprec-") as temp:
        root = Path(temp) / "weights"
        for name in MODELS:
            shutil.copytree(RELEASED_WEIGHTS / name, root / name)
            for path in [root / name, *(root / name).rglob("*")]:
                path.chmod(path.stat().st_mode | 0o200)
            started = time.perf_counter()
            zoo.export(f"{name}:1", ["onnx-int8", "onnx-fp16"], weights_dir=str(root), data_dir=str(data_dir))
            print(f"{name}: int8 and fp16 exported and verified in {time.perf_counter() - started:.1f} s")
        speed_and_size(root, images, labels, args.runs)
        print()
        int8_choices(root, data_dir, images, labels)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
