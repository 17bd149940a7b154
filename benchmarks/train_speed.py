"""Training on CPU as a user runs it (`zoo train`), against document 001's DataLoader loop timed in the same run.

Every figure comes from one process on one machine:
- the document's loop: one epoch of its MLP (784-200-200-10, ReLU on the logits, SGD lr 0.01, batch 200)
  over a DataLoader with ToTensor + Normalize per sample, as document 001 writes it;
- mnist-mlp's document recipe (the same model and hyperparameters) through `zoo.train`: training_seconds
  (MNIST load, every epoch, the test-set metrics) per epoch, and the steady-state epoch of the loop alone;
- the default recipes of mnist-mlp and lenet through `zoo.train`: training time and test accuracy;
- the matrix-product bounds: the epoch's own GEMMs, at the shapes one document-recipe step uses, in float32
  and bfloat16.

    python benchmarks/train_speed.py [--data-dir ../shared/data] [--epochs 5] [--before]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from typing import Any

import torch
from torch import nn
from torchvision import datasets, transforms

import zoo
from zoo.core.data import load_mnist, resolve_data_dir
from zoo.core.registry import get_model
from zoo.core.tasks import classification_loss
from zoo.training.loops import fit
from zoo.training.trainer import build

BATCH, LR = 200, 0.01
# The default recipes as they were before bf16 (zoo 0.1.0), to time against with --before.
BEFORE = {
    "mnist-mlp": {"epochs": 16, "batch_size": 256, "lr": 3e-3, "dropout": 0.15, "precision": "fp32"},
    "lenet": {"epochs": 12, "batch_size": 128, "lr": 4e-3, "precision": "fp32"},
}


CPU = torch.device("cpu")


def document_epoch(data_dir: str, device: torch.device = CPU) -> float:
    """One epoch of document 001's loop as written: a DataLoader on the CPU, `.to(device)` per batch."""
    loader = torch.utils.data.DataLoader(
        datasets.MNIST(
            data_dir,
            train=True,
            download=False,
            transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]),
        ),
        batch_size=BATCH,
        shuffle=True,
    )
    net = nn.Sequential(
        nn.Linear(784, 200),
        nn.ReLU(inplace=True),
        nn.Linear(200, 200),
        nn.ReLU(inplace=True),
        nn.Linear(200, 10),
        nn.ReLU(inplace=True),
    ).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    criteon = nn.CrossEntropyLoss().to(device)
    started = time.perf_counter()
    for batch_idx, (data, target) in enumerate(loader):
        data, target = data.view(-1, 28 * 28).to(device), target.to(device)
        loss = criteon(net(data), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if batch_idx % 100 == 0:
            loss.item()  # the document prints the loss every 100 batches
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started


def zoo_train(name: str, recipe: str, overrides: dict[str, Any] | None = None, device: str = "cpu") -> dict[str, Any]:
    """`zoo train` as a user runs it, into a throwaway weights folder: its manifest's time, epochs and accuracy."""
    with tempfile.TemporaryDirectory() as root:
        result = zoo.train(name, recipe, overrides, device=device, weights_dir=root)
    params = result.manifest["recipe"]["params"]
    return {
        "seconds": result.manifest["training_seconds"],
        "epochs": params["epochs"],
        "precision": params["precision"],
        "accuracy": result.metrics["accuracy"],
    }


def steady_epochs(data_dir: str, epochs: int) -> list[float]:
    """The document recipe's epoch in the loop alone, MNIST already loaded and the model warm."""
    spec = get_model("mnist-mlp")
    recipe = spec.recipe("document", {"epochs": 1})
    splits = load_mnist(data_dir, torch.device("cpu"))
    model = build(spec, recipe, torch.device("cpu"))
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        fit(model, recipe, splits, classification_loss(recipe))
        times.append(time.perf_counter() - started)
    return times


# (m, k, n) of every matrix multiply in one step: three forward, five backward (no gradient for the input).
STEP_GEMMS = [
    (BATCH, 784, 200),
    (BATCH, 200, 200),
    (BATCH, 200, 10),
    (10, BATCH, 200),
    (BATCH, 10, 200),
    (200, BATCH, 200),
    (BATCH, 200, 200),
    (200, BATCH, 784),
]

# About 53 GFLOP an epoch; the often-quoted 72 counts a gradient for the input images too, which nobody needs.
EPOCH_GFLOP = sum(2 * m * k * n for m, k, n in STEP_GEMMS) * 60_000 / BATCH / 1e9


def matmul_bound(dtype: torch.dtype, steps: int = 600) -> tuple[float, float]:
    """Seconds per epoch spent in the step's matrix multiplies alone in `dtype`, and the GFLOP/s they reach."""
    operands = [(torch.randn(m, k).to(dtype), torch.randn(k, n).to(dtype)) for m, k, n in STEP_GEMMS]
    for a, b in operands * 50:
        torch.mm(a, b)
    started = time.perf_counter()
    for _ in range(steps):
        for a, b in operands:
            torch.mm(a, b)
    per_step = (time.perf_counter() - started) / steps
    flop = sum(2 * m * k * n for m, k, n in STEP_GEMMS)
    return per_step * 60_000 / BATCH, flop / per_step / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw (default: $ZOO_DATA_DIR)")
    parser.add_argument("--epochs", type=int, default=5, help="steady-state epochs of the loop to time (median)")
    parser.add_argument("--before", action="store_true", help="also train the default recipes as they were before bf16")
    args = parser.parse_args()
    data_dir = str(resolve_data_dir(args.data_dir))
    os.environ["ZOO_DATA_DIR"] = data_dir
    torch.manual_seed(0)
    load = os.getloadavg()[0]

    document_recipe = zoo_train("mnist-mlp", "document")  # first: it pays the one-off read of the MNIST files
    document = document_epoch(data_dir)
    steady = statistics.median(steady_epochs(data_dir, args.epochs))
    runs = {(name, "default"): zoo_train(name, "default") for name in ("mnist-mlp", "lenet")}
    if args.before:
        runs.update({(name, "before"): zoo_train(name, "default", overrides) for name, overrides in BEFORE.items()})
    document_again = document_epoch(data_dir)
    bounds = {dtype: matmul_bound(dtype) for dtype in (torch.float32, torch.bfloat16)}

    per_epoch = document_recipe["seconds"] / document_recipe["epochs"]
    baseline = min(document, document_again)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {load:.2f} -> "
        f"{os.getloadavg()[0]:.2f}"
    )
    print(
        f"document DataLoader loop        : {document:6.2f} s/epoch, {document_again:.2f} s at the end (ratios use "
        "the faster)"
    )
    print(
        f"zoo train mnist-mlp document    : {per_epoch:6.3f} s/epoch ({document_recipe['seconds']:.2f} s for "
        f"{document_recipe['epochs']} epochs, load and test metrics included, {document_recipe['accuracy']:.2f}%): "
        f"{baseline / per_epoch:.1f}x"
    )
    print(
        f"  the loop alone, warm           : {steady:6.3f} s/epoch (median of {args.epochs}): {baseline / steady:.1f}x"
    )
    for (name, recipe), run in runs.items():
        print(
            f"zoo train {name:9} {recipe:7}     : {run['seconds']:6.2f} s, {run['epochs']} epochs {run['precision']}, "
            f"{run['accuracy']:.2f}% = {run['seconds'] / baseline:.2f} document-loop epochs"
        )
    for dtype, (bound, gflops) in bounds.items():
        print(
            f"matmul bound {str(dtype)[6:]:9}          : {bound:6.3f} s/epoch ({EPOCH_GFLOP:.0f} GFLOP of the step's "
            "GEMM "
            f"shapes at {gflops:.0f} GFLOP/s); the document recipe runs at {bound / per_epoch:.0%} of it"
        )


if __name__ == "__main__":
    main()
