"""Low-precision ONNX files made from the float32 export: int8 (static QDQ quantization) and float16.

Both take and return float32 tensors under the float32 file's names, so a client sends what it sends today.
int8 is calibrated on training inputs drawn from the version's seed; what it was calibrated on is recorded
(`Calibration.record`) so the file can be remade exactly. Neither is within 1e-5 of eager, so the exporter
verifies them on the task instead (test-set accuracy against the float32 file's: zoo/exports/exporter.py).
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.core.data import fingerprint
from zoo.core.errors import VerificationError

# "A few hundred" training inputs: from 256 to 1024 the int8 accuracy of mnist-mlp and lenet moves by at most
# 0.01 points (benchmarks/README.md), and calibration stays under a second.
CALIBRATION_COUNT = 256
CALIBRATION_BATCH = 64
# Per-channel weight scales cost 2-3% more bytes (a scale and zero point per output channel) and gained 0-0.04
# points of accuracy on both MNIST models at every calibration size, never lost any (benchmarks/README.md).
PER_CHANNEL = True


@dataclass(frozen=True)
class Calibration:
    """The exact inputs int8 calibration saw: `count` training inputs at indices drawn from `seed`."""

    inputs: np.ndarray
    seed: int
    source: str

    @property
    def record(self) -> dict[str, Any]:
        """What the manifest keeps: enough to draw the same tensor again and check it is the same."""
        return {"count": len(self.inputs), "seed": self.seed, "fingerprint": fingerprint(torch.from_numpy(self.inputs)),
                "shape": list(self.inputs.shape), "dtype": str(self.inputs.dtype),
                "drawn": f"torch.randperm(len(train), generator=manual_seed({self.seed}))[:{len(self.inputs)}] "
                         f"of the training split ({self.source})"}


def draw_calibration(train_x: torch.Tensor, seed: int, source: str, count: int = CALIBRATION_COUNT) -> Calibration:
    """`count` training inputs (all of them when there are fewer) at indices drawn from `seed`."""
    order = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))[:count]
    inputs = train_x.detach().cpu()[order].float().contiguous().numpy()
    return Calibration(inputs, seed, source)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep onnxruntime.quantization's prints and root-logger warnings out of a CLI run (a warning on a root
    logger without handlers would also install one process-wide)."""
    root = logging.getLogger()
    handler, level = logging.NullHandler(), root.level
    root.addHandler(handler)
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def _check(path: Path, what: str) -> None:
    import onnx

    try:
        onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    except onnx.checker.ValidationError as error:
        raise VerificationError(f"onnx.checker rejected the {what} model: {error}") from None


def quantize_int8(source: Path, path: Path, input_name: str, calibration: Calibration,
                  per_channel: bool = PER_CHANNEL) -> dict[str, Any]:
    """Static int8 quantization of the float32 ONNX file `source` into `path`: QDQ form, signed int8 weights
    (per output channel when `per_channel`) and activations, ranges from the calibration inputs (min/max)."""
    import onnxruntime
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            inputs = calibration.inputs
            self.batches = iter([{input_name: inputs[i:i + CALIBRATION_BATCH]}
                                 for i in range(0, len(inputs), CALIBRATION_BATCH)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.batches, None)

    with tempfile.TemporaryDirectory(prefix="zoo-int8-") as scratch, _quiet():
        # Shape inference and graph clean-up first, as onnxruntime asks; symbolic shape inference adds nothing here
        # (every dimension but the batch is fixed).
        prepared = Path(scratch) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), str(path), Reader(), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, calibration_providers=["CPUExecutionProvider"])
    _check(path, "int8")
    return {"exporter": f"onnxruntime.quantization.quantize_static (QDQ, int8 weights and activations, "
                        f"{'per-channel' if per_channel else 'per-tensor'} weights, min/max calibration), "
                        f"onnxruntime {onnxruntime.__version__}",
            "precision": "int8", "per_channel": per_channel, "calibration": calibration.record}


def convert_fp16(source: Path, path: Path) -> dict[str, Any]:
    """The float32 ONNX file `source` with float16 weights and arithmetic, its inputs and outputs kept float32
    (a Cast at each end), into `path`."""
    import onnx
    import onnxconverter_common
    from onnxconverter_common import float16

    with _quiet():
        model = float16.convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
    onnx.save(model, str(path))
    _check(path, "float16")
    return {"exporter": f"onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True), "
                        f"onnxconverter-common {onnxconverter_common.__version__}, onnx {onnx.__version__}",
            "precision": "float16"}
