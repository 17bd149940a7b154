"""open_runtime: every backend gives the eager answers, from many threads, and refuses missing or altered files."""

from __future__ import annotations

import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import zoo
from zoo.cli.main import FLAGS
from zoo.core.data import mnist_test_images


@pytest.fixture(scope="module")
def lenet_weights(trained_weights, tmp_path_factory, data_dir) -> Path:
    """A copy of the trained weights with lenet exported to onnx and torchscript."""
    root = tmp_path_factory.mktemp("runtimes") / "weights"
    shutil.copytree(trained_weights, root)
    zoo.export("lenet", ["onnx", "torchscript"], weights_dir=str(root), data_dir=str(data_dir))
    return root


@pytest.fixture(scope="module")
def digits(data_dir) -> tuple[np.ndarray, np.ndarray]:
    images, labels = mnist_test_images(data_dir, 64)
    return images.numpy(), labels.numpy()


@pytest.mark.parametrize("backend", ["torch", "onnx", "torchscript"])
def test_runtime_describes_itself_and_classifies_real_digits(lenet_weights, digits, backend):
    runtime = zoo.open_runtime("lenet:1", backend, weights_dir=str(lenet_weights))
    assert (runtime.name, runtime.version, runtime.backend) == ("lenet", 1, backend)
    assert runtime.spec is zoo.get_model("lenet") and runtime.manifest["version"] == 1
    images, labels = digits
    logits = runtime.run(images)
    assert logits.shape == (64, 10)
    assert (logits.argmax(1) == labels).mean() > 0.8  # one epoch of training gets ~97% on these


def test_run_is_safe_from_many_threads(lenet_weights, digits):
    images, _ = digits
    for backend in ("onnx", "torchscript", "torch"):
        runtime = zoo.open_runtime("lenet", backend, weights_dir=str(lenet_weights))
        alone = [runtime.run(images[i:i + 1]) for i in range(len(images))]
        with ThreadPoolExecutor(8) as pool:
            together = list(pool.map(lambda i, runtime=runtime: runtime.run(images[i:i + 1]), range(len(images))))
        for a, b in zip(alone, together, strict=True):
            np.testing.assert_array_equal(a, b)


def test_missing_artifact_names_the_command_that_makes_it(lenet_weights):
    """The library names the call that makes it; the CLI says it as its command."""
    with pytest.raises(zoo.ExportError, match=re.escape("export('lenet:1', formats=['pt2'])")) as raised:
        zoo.open_runtime("lenet", "pt2", weights_dir=str(lenet_weights))
    assert "zoo export lenet:1 --format pt2" in raised.value.spelled(FLAGS)


def test_altered_artifact_is_refused(lenet_weights, tmp_path):
    root = tmp_path / "weights"
    shutil.copytree(lenet_weights, root)
    with open(root / "lenet" / "1" / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(zoo.IntegrityError, match="does not match its manifest"):
        zoo.open_runtime("lenet", "onnx", weights_dir=str(root))


def test_bad_inputs_say_what_was_expected(lenet_weights):
    runtime = zoo.open_runtime("lenet", "onnx", weights_dir=str(lenet_weights))
    with pytest.raises(zoo.InvalidInputError, match=r"expects image of shape \[N, 1, 28, 28\], got \[2, 28, 28\]"):
        runtime.run(np.zeros((2, 28, 28), np.float32))
    with pytest.raises(zoo.InvalidInputError, match="got dtype <U1"):
        runtime.run(np.full((1, 1, 28, 28), "a"))
    assert runtime.run(np.zeros((1, 1, 28, 28), np.float64)).dtype == np.float32


def test_unknown_backend_and_unexportable_model(lenet_weights):
    with pytest.raises(zoo.ExportError, match="expected one of torch, onnx, torchscript, pt2"):
        zoo.open_runtime("lenet", "tensorrt", weights_dir=str(lenet_weights))
    with pytest.raises(zoo.ExportError, match="no forward pass over inputs"):
        zoo.open_runtime("himmelblau", "torch", weights_dir=str(lenet_weights))
