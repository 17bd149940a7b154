"""`zoo predict` over a folder of 10,000 PNGs (the MNIST test set) against the loop a user would write without it:
`zoo.load_model(...).preprocess` and the module, one image at a time. Same machine, same files, same run.

Measured: images per second of the baseline loop; of zoo.predict in-process (reading, preprocessing and
answering in batches) on torch and on auto (ONNX Runtime where the version is exported); and of the whole
`zoo predict DIR --json` command, process start and torch import included. Accuracy is printed beside each, so a
fast wrong answer shows.

    python benchmarks/predict_speed.py [--count 10000] [--model mnist-mlp:1] [--data-dir ../shared/data]
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import zoo
from zoo.core.data import mnist_test_images, resolve_data_dir

RELEASED = str(Path(__file__).resolve().parent.parent / "weights")
ZOO = str(Path(sys.executable).with_name("zoo"))


def write_pngs(folder: Path, images: np.ndarray) -> list[Path]:
    paths = []
    for i, image in enumerate(images):
        path = folder / f"{i // 1000:02d}" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "PNG")
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


def baseline(ref: str, paths: list[Path]) -> tuple[float, list[int]]:
    name, version = zoo.parse_ref(ref)
    model = zoo.load_model(name, version, weights_dir=RELEASED)
    started = time.perf_counter()
    answers = []
    with torch.no_grad():
        for path in paths:
            answers.append(int(model.model(model.preprocess(path)).argmax(1)))
    return time.perf_counter() - started, answers


def library(ref: str, folder: Path, backend: str) -> tuple[float, list[int]]:
    started = time.perf_counter()
    answers = [p.answer for p in zoo.predict(ref, [str(folder)], backend=backend, weights_dir=RELEASED)]
    return time.perf_counter() - started, answers


def command(ref: str, folder: Path) -> tuple[float, list[int]]:
    started = time.perf_counter()
    result = subprocess.run([ZOO, "predict", ref, str(folder), "--json", "--weights-dir", RELEASED],
                            capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - started
    return seconds, [json.loads(line)["digit"] for line in result.stdout.splitlines()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--model", default="mnist-mlp:1")
    parser.add_argument("--data-dir", default=None)
    options = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    pixels, labels = mnist_test_images(resolve_data_dir(options.data_dir), options.count)
    images = (pixels[:, 0].numpy() * 255).round().astype(np.uint8)
    with tempfile.TemporaryDirectory() as temp:
        folder = Path(temp) / "digits"
        paths = write_pngs(folder, images)
        runs = {
            "loop: load_model().preprocess + module, per image": baseline(options.model, paths),
            "zoo.predict, backend torch": library(options.model, folder, "torch"),
            "zoo.predict, backend auto (onnx)": library(options.model, folder, "auto"),
            "`zoo predict DIR --json` (process start included)": command(options.model, folder),
        }
    base = options.count / runs["loop: load_model().preprocess + module, per image"][0]
    print(f"| {options.model} over {options.count:,} PNGs | images/s | x the loop | accuracy |")
    print("| --- | --- | --- | --- |")
    for label, (seconds, answers) in runs.items():
        rate = options.count / seconds
        accuracy = 100.0 * float(np.mean(np.array(answers) == labels.numpy()))
        print(f"| {label} | {rate:,.0f} | {rate / base:.2f} | {accuracy:.2f}% |")


if __name__ == "__main__":
    main()
