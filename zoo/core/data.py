"""Data sets as device tensors: real MNIST through torchvision, and seeded synthetic data."""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs
import torch

from zoo.core.errors import DataNotFoundError

MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


@dataclass
class Splits:
    """A data set as tensors already on the training device, plus a fingerprint of its content."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    fingerprint: str
    description: str = ""


@dataclass(frozen=True)
class DataContext:
    """Where data comes from and where its tensors go."""

    data_dir: Path
    device: torch.device


def resolve_data_dir(data_dir: os.PathLike | str | None = None) -> Path:
    """`data_dir`, else $ZOO_DATA_DIR, else the per-user cache folder (~/.cache/zoo/data on Linux)."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("ZOO_DATA_DIR"):
        return Path(os.environ["ZOO_DATA_DIR"]).expanduser()
    return platformdirs.user_cache_path("zoo") / "data"


def fingerprint(*tensors: torch.Tensor) -> str:
    """sha256 over the tensors' bytes: the same data gives the same fingerprint on any machine."""
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return "sha256:" + digest.hexdigest()


@functools.lru_cache(maxsize=2)
def _mnist_uint8(root: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, str]:
    from torchvision import datasets

    try:
        train = datasets.MNIST(str(root), train=True, download=False)
    except RuntimeError:
        try:
            train = datasets.MNIST(str(root), train=True, download=True)
        except Exception as exc:  # torchvision raises plain RuntimeError / URLError when offline
            expected = ", ".join(str(root / "MNIST" / "raw" / name) for name in MNIST_FILES)
            raise DataNotFoundError(
                f"MNIST is not in {root} and could not be downloaded ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0]}); "
                f"expected the files {expected} (set --data-dir or ZOO_DATA_DIR to a folder that has them)"
            ) from None
    test = datasets.MNIST(str(root), train=False, download=False)
    tensors = (train.data, train.targets, test.data, test.targets)
    return (*tensors, fingerprint(*tensors))


def load_mnist(data_dir: Path, device: torch.device) -> Splits:
    """MNIST as float32 pixels in [0, 1], shape [N, 1, 28, 28], and int64 labels, on `device`."""
    train_x, train_y, test_x, test_y, digest = _mnist_uint8(Path(data_dir).resolve())

    def pixels(images: torch.Tensor) -> torch.Tensor:
        return images.to(device).unsqueeze(1).float().div_(255.0)

    return Splits(
        train_x=pixels(train_x),
        train_y=train_y.to(device),
        test_x=pixels(test_x),
        test_y=test_y.to(device),
        fingerprint=digest,
        description="MNIST: 60000 training and 10000 test images",
    )


def mnist_test_images(data_dir: Path, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` MNIST test images as [count, 1, 28, 28] pixels in [0, 1], with their labels."""
    _, _, test_x, test_y, _ = _mnist_uint8(Path(data_dir).resolve())
    return test_x[:count].unsqueeze(1).float().div(255.0), test_y[:count].clone()
