"""Running a stored version through one backend: PyTorch eager, TorchScript, torch.export or ONNX Runtime.

Every backend takes and returns float32 numpy arrays with a batch dimension, so callers (evaluate, the server,
benchmarks) never care which one answers.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn
from zoo.errors import ExportError, InvalidInputError
from zoo.registry import get_model
from zoo.spec import ModelSpec
from zoo.store import WeightsStore, check_sha256, parse_ref

# Artifact file per export format: the names a Triton model repository expects (model.pt2 is torch.export's).
ARTIFACT_FILES = {"onnx": "model.onnx", "torchscript": "model.pt", "pt2": "model.pt2"}
BACKENDS = ("torch", *ARTIFACT_FILES)

Predict = Callable[[np.ndarray], np.ndarray]


@contextlib.contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence torch's FutureWarnings that TorchScript is deprecated; the CLI says so once instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.")
        yield


def torch_predict(module: Callable[[torch.Tensor], torch.Tensor], device: torch.device = torch.device("cpu")) -> Predict:
    """A predictor over a torch callable: numpy in, numpy out, under inference_mode."""
    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x).to(device)).cpu().numpy()

    return predict


def torchscript_predict(path: Path) -> Predict:
    """A predictor over a saved TorchScript module (thread-safe: a scripted module's forward holds no state)."""
    with quiet_torchscript():
        module = torch.jit.load(str(path), map_location="cpu")
    return torch_predict(module.eval())


def pt2_predict(path: Path) -> Predict:
    """A predictor over a saved torch.export ExportedProgram."""
    return torch_predict(torch.export.load(str(path)).module())


# From this batch size on, a thread per core pays for waking its pool (measured: benchmarks/README.md).
ONNX_PARALLEL_BATCH = 16


def onnx_session_options(threads: int):
    """Options for the zoo's small models: every graph optimisation, `threads` intra-op threads, errors-only logs."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def onnx_predict(path: Path, threads: Optional[int] = None) -> Predict:
    """A predictor over an ONNX file in ONNX Runtime (InferenceSession.run is thread-safe).

    With `threads` None it keeps two sessions: one thread for small batches, where a thread pool costs more
    to wake than it saves (lenet at batch 1: 22 us vs 34 us), and one per core from ONNX_PARALLEL_BATCH up.
    """
    import onnxruntime

    def session(count: int) -> "onnxruntime.InferenceSession":
        return onnxruntime.InferenceSession(str(path), onnx_session_options(count), providers=["CPUExecutionProvider"])

    small = session(threads or 1)
    large = small if threads or (os.cpu_count() or 1) == 1 else session(os.cpu_count() or 1)
    input_name = small.get_inputs()[0].name

    def predict(x: np.ndarray) -> np.ndarray:
        chosen = large if len(x) >= ONNX_PARALLEL_BATCH else small
        return chosen.run(None, {input_name: x})[0]

    return predict


ARTIFACT_LOADERS: dict[str, Callable[[Path], Predict]] = {
    "onnx": onnx_predict,
    "torchscript": torchscript_predict,
    "pt2": pt2_predict,
}


@dataclass
class Runtime:
    """A stored version ready for inference through one backend; `run` is safe to call from many threads."""

    name: str
    version: int
    spec: ModelSpec
    manifest: dict[str, Any]
    backend: str
    predict: Predict = field(repr=False)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model's output for a float32 batch shaped like the spec's input, e.g. [N, 1, 28, 28] -> [N, 10]."""
        return self.predict(self.check_input(x))

    def check_input(self, x: Any) -> np.ndarray:
        """`x` as a contiguous float32 array, or InvalidInputError saying which shape and dtype were expected."""
        expected = self.spec.input
        array = np.asarray(x)
        if array.dtype.kind not in "fiu":
            raise InvalidInputError(f"{self.name} expects {expected.name} as {expected.dtype} numbers, got dtype {array.dtype}")
        if array.ndim != len(expected.shape) or tuple(array.shape[1:]) != tuple(expected.shape[1:]) or not array.shape[0]:
            shape = "[" + ", ".join(map(str, expected.shape)) + "]"
            raise InvalidInputError(f"{self.name} expects {expected.name} of shape {shape}, got {list(array.shape)}")
        return np.ascontiguousarray(array, dtype=np.float32)


def exportable_model(name: str) -> ModelSpec:
    """The spec of `name` if it has a forward pass over inputs to export and run; raise saying so otherwise."""
    spec = get_model(name)
    if not spec.exportable:
        raise ExportError(f"{name} cannot be exported or run on inputs: it has no forward pass over inputs "
                          f"(only models with an input spec can; `zoo info {name}` says why)")
    return spec


def artifact_path(name: str, version: int, folder: Path, manifest: dict[str, Any], backend: str) -> Path:
    """The checked path of a version's artifact for `backend`; missing or altered files raise with the fix."""
    record = manifest.get("artifacts", {}).get(backend)
    path = folder / ARTIFACT_FILES[backend]
    if record is None or not path.is_file():
        raise ExportError(
            f"{name} version {version} has no {backend} artifact in {folder}; "
            f"create it with `zoo export {name}:{version} --format {backend}`"
        )
    check_sha256(path, record["sha256"])
    return path


def open_runtime(ref: str, backend: str = "torch", weights_dir: Optional[str] = None, device: str = "cpu",
                 threads: Optional[int] = None) -> Runtime:
    """Open `MODEL[:VERSION]` for inference through `backend` (torch, torchscript, pt2 or onnx).

    `device` places the eager module; the exported files run on CPU. `threads` fixes ONNX Runtime's
    intra-op threads (a server with a worker per core wants 1); torch's are process-wide (torch.set_num_threads).
    """
    if backend not in BACKENDS:
        raise ExportError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    name, version = parse_ref(ref)
    spec = exportable_model(name)
    if backend == "torch":
        from zoo.loading import load_version

        loaded = load_version(ref, weights_dir, device)
        predict = torch_predict(loaded.model, next(loaded.model.parameters()).device)
        return Runtime(name, loaded.version, spec, loaded.manifest, backend, predict)
    store = WeightsStore(weights_dir)
    version = store.resolve(name, version)
    manifest = store.manifest(name, version)
    path = artifact_path(name, version, store.version_dir(name, version), manifest, backend)
    predict = onnx_predict(path, threads) if backend == "onnx" else ARTIFACT_LOADERS[backend](path)
    return Runtime(name, version, spec, manifest, backend, predict)


class RuntimeModule(nn.Module):
    """A Runtime dressed as an eval-mode nn.Module, so the specs' own metric functions score any backend.

    forward goes through the runtime; any other attribute a metric reads (linear-regression's slope comes
    from its weights) falls back to the eager module of the same version.
    """

    def __init__(self, runtime: Runtime, eager: nn.Module) -> None:
        super().__init__()
        self.runtime = runtime
        object.__setattr__(self, "eager", eager)  # not a submodule: its parameters are not this module's

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(self.runtime.run(x.detach().cpu().numpy())).to(x.device)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(self.__dict__["eager"], name)
