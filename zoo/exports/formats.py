"""The export formats, in one table: file name, exporter, loader, and the platform name Triton and v2 give it.

Adding a format is one `Format` entry in FORMATS; the exporter, the runtimes, the CLI and the server read it.
Every loader returns a predictor that takes and returns float32 numpy arrays with a batch dimension.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import warnings
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from zoo.core.errors import Call, IntegrityError, Setting, VerificationError

if TYPE_CHECKING:  # the table is read by the command line's --help and completion, which must not load torch
    import numpy as np
    import torch
    from torch import nn

    from zoo.core.spec import Interface

NumpyPredict = Callable[["np.ndarray"], "np.ndarray"]
# A batch of 1 would let the exporters specialise the batch dimension to 1, so they trace a batch of 2.
EXAMPLE_BATCH = 2
# From this batch size on, a thread per core pays for waking its pool (measured: benchmarks/README.md).
ONNX_PARALLEL_BATCH = 16
# The platform Triton and the v2 protocol name for PyTorch modules (eager here, TorchScript in Triton).
TORCH_PLATFORM = "pytorch_libtorch"


@contextlib.contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence torch's FutureWarnings that TorchScript is deprecated; the CLI says so once instead."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, message=r"`torch\.jit\.")
        yield


def torch_predict(module: Callable[[torch.Tensor], torch.Tensor],
                  device: torch.device | None = None) -> NumpyPredict:
    """A predictor over a torch callable (on `device`, default CPU): numpy in, numpy out, under inference_mode."""
    import torch

    device = device or torch.device("cpu")

    def predict(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return module(torch.from_numpy(x).to(device)).cpu().numpy()

    return predict


def _write(path: Path, buffer: io.BytesIO) -> None:
    """Write a serialised archive from memory: torch's own file writer aborts the process on a full disk,
    where Python's raises OSError."""
    path.write_bytes(buffer.getbuffer())


def _example(interface: Interface) -> tuple[torch.Tensor]:
    import torch

    return (torch.rand(EXAMPLE_BATCH, *interface.input.features),)


def _dynamic_batch() -> tuple[dict[int, Any]]:
    import torch

    return ({0: torch.export.Dim("N", min=1)},)


# --- ONNX


def export_onnx(model: nn.Module, interface: Interface, path: Path, opset: int | None) -> dict[str, Any]:
    """torch.onnx.export through the dynamo exporter, as one self-contained file, then onnx.checker in full."""
    import onnx
    import torch

    # The exporter reports progress and diagnostics on stdout/stderr; a CLI run should show none of it.
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        program = torch.onnx.export(
            model, _example(interface), dynamo=True, dynamic_shapes=_dynamic_batch(), opset_version=opset,
            input_names=[interface.input.name], output_names=[interface.output.name],
            external_data=False, verbose=False,
        )
        assert program is not None  # dynamo=True always returns the program
        program.save(str(path), external_data=False)
    proto = onnx.load(str(path))
    try:
        onnx.checker.check_model(proto, full_check=True)
    except onnx.checker.ValidationError as error:
        raise VerificationError(f"onnx.checker rejected the exported model: {error}") from None
    used = next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))
    return {"exporter": f"torch.onnx.export(dynamo=True), torch {torch.__version__}, onnx {onnx.__version__}",
            "opset": used}


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


def load_onnx(path: Path, threads: int | None = None) -> NumpyPredict:
    """A predictor over an ONNX file in ONNX Runtime (InferenceSession.run is thread-safe).

    With `threads` None it keeps two sessions: one thread for small batches, where a thread pool costs more
    to wake than it saves (lenet at batch 1: 22 us vs 34 us), and one per core from ONNX_PARALLEL_BATCH up.
    """
    import onnxruntime

    def session(count: int) -> onnxruntime.InferenceSession:
        return onnxruntime.InferenceSession(str(path), onnx_session_options(count), providers=["CPUExecutionProvider"])

    small = session(threads or 1)
    large = small if threads or (os.cpu_count() or 1) == 1 else session(os.cpu_count() or 1)
    input_name = small.get_inputs()[0].name
    output_names = [small.get_outputs()[0].name]  # named, not None: run() would list every output on each call

    def predict(x: np.ndarray) -> np.ndarray:
        chosen = large if len(x) >= ONNX_PARALLEL_BATCH else small
        return chosen.run(output_names, {input_name: x})[0]

    return predict


# --- TorchScript


def export_torchscript(model: nn.Module, interface: Interface, path: Path, opset: int | None) -> dict[str, Any]:
    """torch.jit.trace (the models have no data-dependent control flow) and torch.jit.save."""
    import torch

    with quiet_torchscript():
        traced = torch.jit.trace(model, _example(interface))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    _write(path, buffer)
    return {"exporter": f"torch.jit.trace, torch {torch.__version__} (TorchScript is deprecated: prefer pt2)",
            "opset": None}


def load_torchscript(path: Path, threads: int | None = None) -> NumpyPredict:
    """A predictor over a saved TorchScript module (thread-safe: a scripted module's forward holds no state)."""
    import torch

    with quiet_torchscript():
        module = torch.jit.load(str(path), map_location="cpu")
    return torch_predict(module.eval())


# --- torch.export


def export_pt2(model: nn.Module, interface: Interface, path: Path, opset: int | None) -> dict[str, Any]:
    """torch.export.export with a dynamic batch, saved by torch.export.save."""
    import torch

    program = torch.export.export(model, _example(interface), dynamic_shapes=_dynamic_batch())
    buffer = io.BytesIO()
    torch.export.save(program, buffer)
    _write(path, buffer)
    return {"exporter": f"torch.export.export, torch {torch.__version__}", "opset": None}


def load_pt2(path: Path, threads: int | None = None) -> NumpyPredict:
    """A predictor over a saved torch.export ExportedProgram, loaded without unpickling anything.

    torch.export.load unpickles in full (weights_only=False) any weight or constant its archive marks as pickled,
    custom and opaque objects, and the example inputs when a weights_only load of them fails; when the archive
    cannot be read it falls back to the 2.7 format, whose loader does the same. So the file is read once into memory
    and checked (check_pt2_archive) before torch reads those same bytes: only what torch.export.save writes for the
    zoo's models (tensors as raw bytes, example inputs that load with weights_only=True) gets as far as torch.
    """
    try:
        data = path.read_bytes()
    except OSError as error:  # reading, not writing: an export that cannot be read is a fault of the file
        raise IntegrityError(f"could not read {path}: {error.strerror or error}") from None
    check_pt2_archive(path, data)
    import torch

    try:
        program = torch.export.load(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 (whatever torch raises on a damaged archive is a fault of the file)
        raise IntegrityError(f"{path} is not a loadable torch.export archive: {type(error).__name__}: "
                             f"{(str(error).splitlines() or [''])[0]}") from None
    return torch_predict(program.module())


# What torch.export.save writes for a module of tensors, below the archive's root folder; nothing else is read.
_PT2_MEMBERS = re.compile(r"archive_format|archive_version|byteorder|\.data/version|\.data/serialization_id"
                          r"|models/[^/]+\.json|extra/[^/]+|data/sample_inputs/[^/]+\.pt"
                          r"|data/weights/[^/]+_weights_config\.json|data/weights/weight_[0-9]+"
                          r"|data/constants/[^/]+_constants_config\.json|data/constants/tensor_[0-9]+")


def check_pt2_archive(path: Path, data: bytes) -> None:
    """Refuse (IntegrityError) a torch.export archive from which torch.export.load would unpickle or run anything:
    members other than tensors, configs and example inputs (AOTInductor libraries, pickled legacy files, custom or
    opaque objects), payloads marked `use_pickle`, or example inputs that a weights_only load refuses."""
    def refuse(reason: str) -> IntegrityError:
        fix = Call("export", settings=(Setting("formats", ["pt2"]),))
        return IntegrityError(f"{path} is refused: {reason}; the zoo loads only what torch.export.save writes for "
                              f"tensors, without unpickling (re-export it with `{fix}`)", settings=(fix,))

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise refuse("it is not a zip archive") from None
    with archive:
        names = archive.namelist()
        roots = {name.split("/", 1)[0] for name in names}
        if len(roots) != 1 or any("/" not in name for name in names):
            raise refuse("its members are not under one root folder (not the pt2 archive format)")
        root = f"{roots.pop()}/"
        for name in names:
            inner = name[len(root):]
            if not _PT2_MEMBERS.fullmatch(inner):
                raise refuse(f"it holds {inner!r}, which is not a tensor, config or example input")
            if inner.endswith("_config.json"):
                try:
                    config = json.loads(archive.read(name)).get("config", {})
                    pickled = [key for key, payload in config.items() if payload.get("use_pickle", True)]
                except (ValueError, AttributeError) as error:
                    raise refuse(f"{inner} is not a payload config ({error})") from None
                if pickled:
                    raise refuse(f"{inner} marks {pickled[0]!r} as pickled")
            elif inner.startswith("data/sample_inputs/"):
                import torch

                try:
                    torch.load(io.BytesIO(archive.read(name)), weights_only=True)
                except Exception as error:  # noqa: BLE001 (any refusal of the safe load is a refusal here)
                    raise refuse(f"its example inputs {inner} do not load with weights_only=True "
                                 f"({type(error).__name__})") from None


# --- low precision, made from the float32 ONNX file (zoo/exports/quantize.py)


def convert_int8(source: Path, path: Path, interface: Interface, calibration: Any) -> dict[str, Any]:
    """int8 from the float32 ONNX file, calibrated on `calibration` (a zoo.exports.quantize.Calibration)."""
    from zoo.exports.quantize import quantize_int8

    return quantize_int8(source, path, interface.input.name, calibration)


def convert_fp16(source: Path, path: Path, interface: Interface, calibration: Any) -> dict[str, Any]:
    """float16 weights and arithmetic from the float32 ONNX file, float32 inputs and outputs."""
    from zoo.exports.quantize import convert_fp16 as to_fp16

    return to_fp16(source, path)


@dataclass(frozen=True)
class Format:
    """One export format: its file beside the weights, how to write and read it, and its Triton platform.

    A format is written by `export` from the eager module, or, when it names the format it is `derived_from`, by
    `convert` from that format's file (int8 and float16 from the float32 ONNX file).
    """

    name: str
    file: str
    platform: str
    export: Callable[[nn.Module, Interface, Path, int | None], dict[str, Any]] | None
    load: Callable[[Path, int | None], NumpyPredict]
    note: str = ""  # what a user should know after exporting to it
    # Whether Triton Inference Server's backend for `platform` loads the file as it is (zoo triton-repo).
    triton: bool = False
    derived_from: str | None = None
    convert: Callable[[Path, Path, Interface, Any], dict[str, Any]] | None = None
    # Whether `convert` needs calibration inputs (a zoo.exports.quantize.Calibration) drawn from the training split.
    calibrated: bool = False
    # A lossy file answers differently from eager (beyond 1e-5): it is verified on the task against the file it is
    # derived from, and never chosen unasked (`all`, the server's `auto`).
    lossy: bool = False
    # The file's name in a Triton model version folder, where each format has a folder of its own.
    triton_file: str | None = None

    def exporter(self) -> Callable[[nn.Module, Interface, Path, int | None], dict[str, Any]]:
        """`export`, of a format written from the eager module (one derived from another format has `convert`)."""
        if self.export is None:
            raise TypeError(f"{self.name} is made from {self.derived_from}, not exported: call its converter")
        return self.export

    def converter(self) -> Callable[[Path, Path, Interface, Any], dict[str, Any]]:
        """`convert`, of a format derived from another format's file."""
        if self.convert is None:
            raise TypeError(f"{self.name} is exported from the eager module, not converted: call its exporter")
        return self.convert

    @property
    def repository_file(self) -> str:
        """The name Triton's backend for `platform` looks for in a version folder."""
        return self.triton_file or self.file


# File names are the ones a Triton model repository expects (model.pt2 is torch.export's own); the low-precision
# files are named apart from model.onnx so all three can sit beside the weights, and take model.onnx in Triton.
FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("onnx", "model.onnx", "onnxruntime_onnx", export_onnx, load_onnx, triton=True),
        Format(
            "torchscript",
            "model.pt",
            TORCH_PLATFORM,
            export_torchscript,
            load_torchscript,
            note="TorchScript is deprecated in PyTorch; model.pt2 (--format pt2, torch.export) is its supported "
                 "successor.",
            triton=True,
        ),
        Format("pt2", "model.pt2", TORCH_PLATFORM, export_pt2, load_pt2),
        Format(
            "onnx-int8",
            "model.int8.onnx",
            "onnxruntime_onnx",
            None,
            load_onnx,
            triton=True,
            derived_from="onnx",
            convert=convert_int8,
            calibrated=True,
            lossy=True,
            triton_file="model.onnx",
            note="int8 answers differ from float32's: it was kept because its test-set score is within the bound "
            "recorded in the manifest (verification).",
        ),
        Format(
            "onnx-fp16",
            "model.fp16.onnx",
            "onnxruntime_onnx",
            None,
            load_onnx,
            triton=True,
            derived_from="onnx",
            convert=convert_fp16,
            lossy=True,
            triton_file="model.onnx",
            note="float16 pays on GPUs; on a CPU ONNX Runtime mostly casts back to float32, so it is slower there "
            "(benchmarks/README.md).",
        ),
    )
}
# What `all` exports: every format whose file answers as eager does (the lossy ones are asked for by name).
LOSSLESS_FORMATS = tuple(name for name, fmt in FORMATS.items() if not fmt.lossy)
# The formats a Triton model repository can hold (Triton's libtorch backend runs TorchScript, not torch.export).
TRITON_FORMATS = tuple(name for name, fmt in FORMATS.items() if fmt.triton)
# What can answer inferences: the eager module itself, or any format's file.
BACKENDS = ("torch", *FORMATS)


def platform_of(backend: str) -> str:
    """The Triton / v2 platform name of a backend."""
    return FORMATS[backend].platform if backend in FORMATS else TORCH_PLATFORM


def file_of(backend: str) -> str | None:
    """The file beside the weights that answers for `backend` (None for eager PyTorch, which reads the weights)."""
    return FORMATS[backend].file if backend in FORMATS else None
