"""zoo: the networks of five PyTorch tutorials, registered, trainable, versioned and exportable."""

from zoo.cards import draw_card, stored_card
from zoo.catalog import describe_model
from zoo.comparison import compare
from zoo.devices import resolve_device
from zoo.distributed import Topology, World, launch
from zoo.errors import (
    ComparisonError,
    DataNotFoundError,
    DeviceUnavailableError,
    DistributedRunError,
    DrawingError,
    ExportError,
    IntegrityError,
    InvalidInputError,
    InvalidOverrideError,
    InvalidSettingError,
    MissingArtifactError,
    MissingCardError,
    NotDataParallelError,
    NotExportableError,
    ReadOnlyVersionError,
    StorageError,
    UnknownModelError,
    UnknownRecipeError,
    UnknownVersionError,
    VerificationError,
    ZooError,
)
from zoo.evaluation import evaluate
from zoo.preprocessing import preprocess
from zoo.exporter import export
from zoo.formats import BACKENDS, FORMATS, LOSSLESS_FORMATS, TRITON_FORMATS
from zoo.imaging import image_to_batch, picture_to_batch, pixels_to_batch
from zoo.inference import classify_digits, predict_values
from zoo.loading import LoadedModel, load_model, load_version
from zoo.loops import Progress
from zoo.recipes import PRECISIONS, Recipe, parse_assignments
from zoo.registry import get_model, list_models, register_model
from zoo.runtimes import Runtime, open_runtime
from zoo.spec import InputForm, Interface, Minimise, ModelSpec, Supervised, TensorSpec
from zoo.store import WeightsStore, parse_ref
from zoo.training import TrainResult, check_training, train
from zoo.triton import write_triton_repository

__all__ = [
    "DataNotFoundError", "DeviceUnavailableError", "DistributedRunError", "ExportError", "IntegrityError", "InvalidInputError",
    "InvalidOverrideError", "InvalidSettingError", "MissingArtifactError", "NotDataParallelError", "NotExportableError", "ReadOnlyVersionError", "StorageError", "UnknownModelError",
    "UnknownRecipeError", "UnknownVersionError", "VerificationError", "ZooError", "ComparisonError", "DrawingError",
    "MissingCardError", "draw_card", "stored_card", "compare",
    "describe_model", "LoadedModel", "evaluate", "load_model", "load_version", "Recipe", "PRECISIONS", "parse_assignments", "get_model", "list_models",
    "register_model", "ModelSpec", "TensorSpec", "Interface", "InputForm", "Supervised", "Minimise", "WeightsStore",
    "parse_ref", "Progress", "TrainResult", "resolve_device", "train", "export", "open_runtime", "Runtime", "BACKENDS",
    "FORMATS", "preprocess", "image_to_batch", "picture_to_batch", "pixels_to_batch", "classify_digits", "predict_values",
    "World", "Topology", "launch", "check_training", "write_triton_repository", "TRITON_FORMATS", "LOSSLESS_FORMATS",
]

# Last, so that model files, the zoo's own and plugins alike, can `from zoo import ...` every name above.
from zoo import models as _models  # noqa: E402, F401  (registers every architecture)
