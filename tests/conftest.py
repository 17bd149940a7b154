"""Shared fixtures: the real MNIST beside the checkout, and weights roots that are never the project's own."""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"

# Set before the zoo is imported anywhere, so no test can fall back to the project's weights/ or ~/.cache.
os.environ.setdefault("ZOO_DATA_DIR", str(SHARED_DATA))
# Apps made in this process share prometheus_client's registry: a poll thread of one would rewrite the
# models-loaded gauge another test reads. Reloads are tested on their own (refresh(), and zoo serve processes).
os.environ.setdefault("ZOO_SERVE_POLL_SECONDS", "0")


def encoded(picture: Image.Image | np.ndarray, fmt: str = "PNG", **options: Any) -> bytes:
    """`picture` (an image, or uint8 pixels) as the bytes of a file in `fmt`, as a client would send it."""
    image = picture if isinstance(picture, Image.Image) else Image.fromarray(picture)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.fixture(autouse=True)
def _isolated_weights(tmp_path_factory, monkeypatch):
    """Every test gets a throwaway default weights root unless it asks for another."""
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(tmp_path_factory.mktemp("default-weights")))


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    """An empty weights root, also set as $ZOO_WEIGHTS_DIR."""
    root = tmp_path / "weights"
    monkeypatch.setenv("ZOO_WEIGHTS_DIR", str(root))
    return root


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return Path(os.environ["ZOO_DATA_DIR"])


def cached(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A fresh folder made by `build`; with $ZOO_TEST_CACHE set (benchmarks/mutation.sh runs the same tests
    hundreds of times), made once into that folder and copied from it after. Unset, as in CI, it is always built."""
    root = tmp_path_factory.mktemp(name)
    cache = os.environ.get("ZOO_TEST_CACHE")
    if not cache:
        build(root)
        return root
    kept = Path(cache) / name
    if not (kept / ".complete").is_file():
        shutil.rmtree(kept, ignore_errors=True)
        build(root)
        shutil.copytree(root, kept)
        (kept / ".complete").write_text("")
    shutil.rmtree(root)
    shutil.copytree(kept, root, ignore=shutil.ignore_patterns(".complete"))
    return root


QUICK = {
    "mnist-mlp": {"epochs": 1},
    "lenet": {"epochs": 1},
    "linear-regression": {},
    "two-layer-net": {"epochs": 20},
    "tiny-fnn": {},
}


@pytest.fixture(scope="session")
def trained_weights(tmp_path_factory, data_dir) -> Path:
    """A weights root with one quickly trained version of each exportable model (MNIST models: 1 epoch)."""

    def build(root: Path) -> None:
        import zoo

        for name, overrides in QUICK.items():
            zoo.train(name, overrides=overrides, device="cpu", data_dir=str(data_dir), weights_dir=str(root))

    return cached(tmp_path_factory, "trained-weights", build)
