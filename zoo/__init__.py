"""zoo: the networks of five PyTorch tutorials, registered, trainable, versioned and exportable.

Every public name is imported on first use (PEP 562), so `import zoo` costs no torch: a command line that
only lists models or completes a word answers before torch would have loaded. `from zoo import X` works as
ever; the architectures register the first time the registry is read (zoo.core.registry).
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(("CardResult", "draw_card", "stored_card"), "zoo.cards.card"),
    "describe_model": "zoo.catalog",
    **dict.fromkeys(("ComparisonResult", "compare"), "zoo.cards.comparison"),
    "resolve_device": "zoo.core.devices",
    "ModelRef": "zoo.core.reference",
    **dict.fromkeys(("Topology", "World", "launch"), "zoo.training.distributed"),
    **dict.fromkeys((
        "ComparisonError", "DataNotFoundError", "DeviceUnavailableError", "DistributedRunError", "DrawingError",
        "ExportError", "IntegrityError", "InvalidInputError", "InvalidOverrideError", "InvalidSettingError",
        "MissingArtifactError", "MissingCardError", "NotDataParallelError", "NotExportableError",
        "ReadOnlyVersionError", "StorageError", "UnknownModelError", "UnknownRecipeError", "UnknownVersionError",
        "VerificationError", "ZooError"), "zoo.core.errors"),
    **dict.fromkeys(("EvaluationResult", "evaluate"), "zoo.exports.evaluation"),
    "ExportResult": "zoo.exports.exporter",
    "preprocess": "zoo.inputs.preprocessing",
    **dict.fromkeys(("export", "launch_training", "train"), "zoo.publishing.runs"),
    **dict.fromkeys(("BACKENDS", "FORMATS", "LOSSLESS_FORMATS", "TRITON_FORMATS"), "zoo.exports.formats"),
    **dict.fromkeys(("image_to_batch", "picture_to_batch", "pixels_to_batch"), "zoo.inputs.imaging"),
    **dict.fromkeys(("classify_digits", "predict_values"), "zoo.exports.inference"),
    **dict.fromkeys(("LoadedModel", "load_model", "load_version"), "zoo.store.loading"),
    "Progress": "zoo.training.loops",
    **dict.fromkeys(("Prediction", "PredictionRun", "predict", "gather_inputs"), "zoo.prediction"),
    **dict.fromkeys(("PRECISIONS", "Recipe", "parse_assignments"), "zoo.core.recipes"),
    **dict.fromkeys(("get_model", "list_models", "register_model", "model_catalog"), "zoo.core.registry"),
    **dict.fromkeys(("Runtime", "open_runtime"), "zoo.exports.runtimes"),
    **dict.fromkeys(("InputForm", "Interface", "Minimise", "ModelSpec", "Supervised", "TensorSpec"), "zoo.core.spec"),
    **dict.fromkeys(("WeightsLocation", "WeightsStore", "parse_ref"), "zoo.store.versions"),
    **dict.fromkeys(("TrainResult", "check_training"), "zoo.training.trainer"),
    "write_triton_repository": "zoo.exports.triton",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        if importlib.util.find_spec(f"zoo.{name}") is not None:  # a subpackage, e.g. zoo.core
            return importlib.import_module(f"zoo.{name}")
        raise AttributeError(f"module 'zoo' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
