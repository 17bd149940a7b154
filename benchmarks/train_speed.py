"""One epoch of mnist-mlp's document recipe: the zoo's trainer vs the document's DataLoader loop.

Both run in this process on the same machine, same model (784-200-200-10, ReLU on the logits),
same recipe (SGD lr 0.01, batch 200, cross-entropy). Also prints the matrix-multiply bound: the
time of just the epoch's matrix multiplies, at the very shapes one training step uses.

    python benchmarks/train_speed.py [--data-dir ../shared/data] [--epochs 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torchvision import datasets, transforms

from zoo.data import load_mnist, resolve_data_dir
from zoo.registry import get_model
from zoo.tasks import classification_loss
from zoo.loops import fit
from zoo.training import build

BATCH, LR = 200, 0.01


def document_epoch(data_dir: str) -> float:
    """Document 001's loop as written: a DataLoader with ToTensor + Normalize per sample."""
    loader = torch.utils.data.DataLoader(
        datasets.MNIST(data_dir, train=True, download=False,
                       transform=transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])),
        batch_size=BATCH, shuffle=True)
    net = nn.Sequential(nn.Linear(784, 200), nn.ReLU(inplace=True), nn.Linear(200, 200), nn.ReLU(inplace=True),
                        nn.Linear(200, 10), nn.ReLU(inplace=True))
    optimizer = torch.optim.SGD(net.parameters(), lr=LR)
    criteon = nn.CrossEntropyLoss()
    started = time.perf_counter()
    for data, target in loader:
        logits = net(data.view(-1, 28 * 28))
        loss = criteon(logits, target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def zoo_epochs(data_dir: str, epochs: int) -> tuple[list[float], float]:
    """The zoo's trainer on the same recipe: MNIST loaded once as tensors, batches taken by index."""
    spec = get_model("mnist-mlp")
    recipe = spec.recipe("document", {"epochs": 1})
    started = time.perf_counter()
    splits = load_mnist(data_dir, torch.device("cpu"))
    load_seconds = time.perf_counter() - started
    model = build(spec, recipe, torch.device("cpu"))
    times = []
    for _ in range(epochs):
        started = time.perf_counter()
        fit(model, recipe, splits, classification_loss(recipe))
        times.append(time.perf_counter() - started)
    return times, load_seconds


# (m, k, n) of every matrix multiply in one step: three forward, five backward (no gradient for the input).
STEP_GEMMS = [(BATCH, 784, 200), (BATCH, 200, 200), (BATCH, 200, 10),
              (10, BATCH, 200), (BATCH, 10, 200), (200, BATCH, 200), (BATCH, 200, 200), (200, BATCH, 784)]

# About 53 GFLOP an epoch; the often-quoted 72 counts a gradient for the input images too, which nobody needs.
EPOCH_GFLOP = sum(2 * m * k * n for m, k, n in STEP_GEMMS) * 60_000 / BATCH / 1e9


def matmul_bound(steps: int = 1000) -> tuple[float, float]:
    """Seconds per epoch spent in the step's matrix multiplies alone, and the GFLOP/s they reach."""
    operands = [(torch.randn(m, k), torch.randn(k, n)) for m, k, n in STEP_GEMMS]
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
    parser.add_argument("--epochs", type=int, default=3, help="zoo epochs to time (median is reported)")
    args = parser.parse_args()
    data_dir = str(resolve_data_dir(args.data_dir))
    torch.manual_seed(0)

    zoo_times, load_seconds = zoo_epochs(data_dir, args.epochs)
    document = document_epoch(data_dir)
    zoo_epoch = statistics.median(zoo_times)
    bound, gflops = matmul_bound()

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"document DataLoader loop : {document:7.2f} s/epoch")
    print(f"zoo trainer              : {zoo_epoch:7.2f} s/epoch (median of {args.epochs}; one-off tensor load {load_seconds:.2f} s)")
    print(f"speed-up                 : {document / zoo_epoch:7.1f}x")
    print(f"matmul bound             : {bound:7.2f} s/epoch ({EPOCH_GFLOP:.0f} GFLOP of the step's own GEMM shapes at "
          f"{gflops:.0f} GFLOP/s); zoo runs at {bound / zoo_epoch:.0%} of it")


if __name__ == "__main__":
    main()
