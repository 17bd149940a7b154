"""Running a stored version through one backend: PyTorch eager, or any export format's file.

Every backend takes and returns float32 numpy arrays with a batch dimension, so callers (evaluate, the server,
benchmarks) never care which one answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.core.errors import Call, InvalidInputError, MissingArtifactError, NotExportableError, Setting
from zoo.core.reference import ModelRef
from zoo.core.registry import get_model
from zoo.core.spec import ModelSpec
from zoo.exports.formats import BACKENDS, FORMATS, NumpyPredict, file_of, platform_of, torch_predict
from zoo.store.loading import load_stored
from zoo.store.manifest import Manifest, version_file
from zoo.store.versions import WeightsLocation, WeightsStore, check_sha256


@dataclass
class Runtime:
    """A stored version ready for inference through one backend; `run` is safe to call from many threads."""

    name: str
    version: int
    spec: ModelSpec
    manifest: Manifest
    backend: str
    predict: NumpyPredict = field(repr=False)

    @property
    def platform(self) -> str:
        """The backend's platform name as Triton and the v2 protocol spell it."""
        return platform_of(self.backend)

    @property
    def file(self) -> str | None:
        """The file beside the weights that answers (model.int8.onnx for onnx-int8); None for eager PyTorch."""
        return file_of(self.backend)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The model's output for a float32 batch shaped like the spec's input, e.g. [N, 1, 28, 28] -> [N, 10]."""
        return self.predict(self.check_input(x))

    def as_torch(self, x: torch.Tensor) -> torch.Tensor:
        """`run` on a tensor, answered on the tensor's device: the backend's own outputs, for scoring it."""
        return torch.from_numpy(self.run(x.detach().cpu().numpy())).to(x.device)

    def check_input(self, x: Any) -> np.ndarray:
        """`x` as a contiguous float32 array, or InvalidInputError saying which shape and dtype were expected."""
        expected = self.spec.required_interface().input
        array = np.asarray(x)
        if array.dtype.kind not in "fiu":
            raise InvalidInputError(
                f"{self.name} expects {expected.name} as {expected.dtype} numbers, got dtype {array.dtype}"
            )
        if array.ndim != len(expected.shape) or tuple(array.shape[1:]) != expected.features or not array.shape[0]:
            shape = "[" + ", ".join(map(str, expected.shape)) + "]"
            raise InvalidInputError(f"{self.name} expects {expected.name} of shape {shape}, got {list(array.shape)}")
        return np.ascontiguousarray(array, dtype=np.float32)


def exportable_model(name: str) -> ModelSpec:
    """The spec of `name` if it has a forward pass over inputs to export and run; raise saying so otherwise."""
    spec = get_model(name)
    if not spec.exportable:
        why = Call("describe_model", name)
        raise NotExportableError(
            f"{name} cannot be exported or run on inputs: it has no forward pass over inputs "
            f"(only models with an input spec can; `{why}` says why)",
            settings=(why,),
        )
    return spec


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise NotExportableError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend


def artifact_path(name: str, version: int, folder: Path, manifest: Manifest, backend: str) -> Path:
    """The checked path of a version's artifact for `backend`; missing or altered files raise with the fix."""
    record = manifest.get("artifacts", {}).get(backend)
    # The file the manifest names, or the format's own name; a name or symlink leading out of the folder is refused.
    path = version_file(folder, (record or {}).get("file", FORMATS[backend].file), f"artifacts.{backend}.file")
    if record is None or not path.is_file():
        fix = Call("export", f"{name}:{version}", (Setting("formats", [backend]),))
        raise MissingArtifactError(
            f"{name} version {version} has no {backend} artifact in {folder}; create it with `{fix}`", settings=(fix,)
        )
    check_sha256(path, record["sha256"])
    return path


def open_runtime(
    ref: ModelRef | str, backend: str = "torch", *, weights_dir: WeightsLocation = None, device: str = "cpu",
    threads: int | None = None,
) -> Runtime:
    """Open `MODEL[:VERSION]` for inference through `backend` (torch, or an export format such as onnx).

    `device` places the eager module; the exported files run on CPU. `threads` fixes ONNX Runtime's
    intra-op threads (a server with a worker per core wants 1); torch's are process-wide (torch.set_num_threads).
    """
    return open_stored(ModelRef.of(ref), WeightsStore.at(weights_dir), backend, device, threads)


def open_stored(ref: ModelRef, store: WeightsStore, backend: str = "torch", device: str = "cpu",
                threads: int | None = None) -> Runtime:
    """`open_runtime` of a parsed reference in `store`."""
    check_backend(backend)
    spec = exportable_model(ref.name)
    if backend == "torch":
        loaded = load_stored(ref, store, device)
        predict = torch_predict(loaded.model, next(loaded.model.parameters()).device)
        return Runtime(ref.name, loaded.version, spec, loaded.manifest, backend, predict)
    version = store.resolve(ref.name, ref.version)
    manifest = store.manifest(ref.name, version)
    path = artifact_path(ref.name, version, store.version_dir(ref.name, version), manifest, backend)
    return Runtime(ref.name, version, spec, manifest, backend, FORMATS[backend].load(path, threads))
