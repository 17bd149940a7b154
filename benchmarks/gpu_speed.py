"""Training on a CUDA GPU as a user runs it (`zoo train --device cuda`), against document 001's own GPU loop.

Every figure comes from one process on one GPU:
- the document's GPU loop ("使用GPU加速"): a DataLoader on the CPU with ToTensor + Normalize per sample,
  `.to(device)` per batch, its MLP and SGD lr 0.01, batch 200; one epoch, timed to the last kernel;
- mnist-mlp's document recipe (the same model and hyperparameters) through `zoo.train`: training_seconds
  per epoch (MNIST moved to the GPU once, every epoch, the test-set metrics);
- time to 98% (mnist-mlp) and to 99% (lenet): the default recipes' training_seconds and test accuracy.

Goals (issue 12): mnist-mlp >= 98% in <= 1 s, lenet >= 99% in <= 2 s, >= 20x the document's loop per epoch.
One warm-up run first, so CUDA context, cuBLAS and cuDNN set-up are not counted; the median of --repeats after.

    python benchmarks/gpu_speed.py [--data-dir ../shared/data] [--device cuda] [--repeats 3] [--precision bf16]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys

import torch
from train_speed import document_epoch, zoo_train

from zoo.core.data import resolve_data_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="folder holding MNIST/raw (default: $ZOO_DATA_DIR)")
    parser.add_argument("--device", default="cuda", help="the CUDA device to time (cuda or cuda:N)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (the median is reported)")
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default=None,
                        help="override the default recipes' precision (default: each recipe's own)")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_speed.py needs a CUDA device: torch.cuda.is_available() is False on this machine")
    data_dir = str(resolve_data_dir(args.data_dir))
    os.environ["ZOO_DATA_DIR"] = data_dir
    device = torch.device(args.device)
    overrides = {"precision": args.precision} if args.precision else {}

    zoo_train("mnist-mlp", "default", {"epochs": 1}, device=args.device)  # warm-up: context, cuBLAS, cuDNN
    zoo_train("lenet", "default", {"epochs": 1}, device=args.device)
    document = statistics.median(document_epoch(data_dir, device) for _ in range(args.repeats))
    doc_runs = [zoo_train("mnist-mlp", "document", device=args.device) for _ in range(args.repeats)]
    per_epoch = statistics.median(run["seconds"] / run["epochs"] for run in doc_runs)
    defaults = {name: [zoo_train(name, "default", overrides, device=args.device) for _ in range(args.repeats)]
                for name in ("mnist-mlp", "lenet")}

    print(f"torch {torch.__version__}, {torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}")
    print(f"document GPU loop             : {document:7.3f} s/epoch (median of {args.repeats})")
    print(f"zoo train mnist-mlp document  : {per_epoch:7.3f} s/epoch (training_seconds / epochs, median of "
          f"{args.repeats}; {doc_runs[0]['accuracy']:.2f}%): {document / per_epoch:.1f}x  [goal >= 20x]")
    for name, goal in (("mnist-mlp", "98% in <= 1 s"), ("lenet", "99% in <= 2 s")):
        runs = defaults[name]
        seconds = statistics.median(run["seconds"] for run in runs)
        accuracies = ", ".join(f"{run['accuracy']:.2f}%" for run in runs)
        print(f"zoo train {name:9} default   : {seconds:7.3f} s (median of {args.repeats}), {runs[0]['epochs']} epochs "
              f"{runs[0]['precision']}, accuracy {accuracies}  [goal {goal}]")


if __name__ == "__main__":
    main()
