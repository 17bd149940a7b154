"""Fixtures and helpers shared by the serve tests: a weights root the server can run on every backend."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import zoo
from zoo.data import mnist_test_images

SERVED = ("mnist-mlp", "lenet", "linear-regression")


@pytest.fixture(scope="session")
def served_weights(trained_weights, tmp_path_factory, data_dir) -> Path:
    """A copy of the trained root with ONNX exports of the served models and a second linear-regression version."""
    root = tmp_path_factory.mktemp("served-weights")
    for name in SERVED:
        shutil.copytree(trained_weights / name, root / name)
    zoo.train("linear-regression", overrides={"seed": 7, "epochs": 50}, device="cpu", weights_dir=str(root))
    for name in SERVED:
        for version in zoo.WeightsStore(root).versions(name):
            zoo.export(f"{name}:{version}", ["onnx"], weights_dir=str(root), data_dir=str(data_dir))
    return root


def mnist_digits(data_dir: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` MNIST test digits as uint8 [count, 28, 28] and their labels."""
    images, labels = mnist_test_images(data_dir, count)
    return (images[:, 0].numpy() * 255).round().astype(np.uint8), labels.numpy()


def photo_of(digit: np.ndarray, fmt: str = "PNG", side: int = 280, colour: bool = True) -> bytes:
    """An MNIST digit as a person might send it: black ink on white paper, upscaled, off-centre, in colour."""
    ink = Image.fromarray(255 - digit).resize((side * 3 // 4, side * 3 // 4), Image.Resampling.BILINEAR)
    paper = Image.new("L", (side, side), 255)
    paper.paste(ink, (side // 5, side // 10))
    image = Image.merge("RGB", (paper, paper, paper)) if colour else paper
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()
