"""The zoo's exceptions: one base, a few kinds, each message saying what was expected and what came.

Every kind says whose fault it is in `caller_error`: True for a mistake in what the caller asked for (a name,
a value, an input), False for a fault of files or data on disk. The CLI turns that into exit 2 or exit 1,
the server into a 4xx or a 500; nothing else needs to know the kinds.
"""

from __future__ import annotations

from typing import ClassVar


class ZooError(Exception):
    """Base of every error the zoo raises on purpose."""

    caller_error: ClassVar[bool] = True


class UnknownModelError(ZooError, LookupError):
    """A model name that is not in the registry."""


class UnknownRecipeError(ZooError, LookupError):
    """A recipe name that the model does not have."""


class UnknownVersionError(ZooError, LookupError):
    """A weights version that is malformed or not in the store."""


class InvalidOverrideError(ZooError, ValueError):
    """A hyperparameter override with an unknown key or a bad value."""


class ReadOnlyVersionError(ZooError, ValueError):
    """A released version, which ships with the zoo and is never changed in place."""


class InvalidSettingError(ZooError, ValueError):
    """A setting that cannot be used as given: a port out of range or in use, a folder that is not there."""


class DeviceUnavailableError(ZooError, RuntimeError):
    """A device that this machine does not have."""


class InvalidInputError(ZooError, ValueError):
    """Inference input of the wrong shape, type or content."""


class ExportError(ZooError, RuntimeError):
    """An export or exported artifact that failed; its kinds say whose fault."""

    caller_error = False


class NotExportableError(ExportError, ValueError):
    """A model, format or backend that cannot be exported or run: the caller asked for something that does not exist."""

    caller_error = True


class MissingArtifactError(ExportError, FileNotFoundError):
    """A version whose exported file for a backend is not on disk."""


class VerificationError(ExportError):
    """An exported file whose outputs do not match PyTorch eager."""


class DataNotFoundError(ZooError, FileNotFoundError):
    """A data set that is neither on disk nor downloadable."""

    caller_error = False


class IntegrityError(ZooError, ValueError):
    """Files on disk that do not match their manifest, or a manifest that cannot be read."""

    caller_error = False


class StorageError(ZooError, OSError):
    """A file or folder that could not be written (a full disk, an unwritable folder)."""

    caller_error = False


class NotDataParallelError(ZooError, ValueError):
    """Several processes asked of a model whose training cannot be split over them, or a batch too small to split."""


class DistributedRunError(ZooError, RuntimeError):
    """A rank of a launched run that failed; the run published nothing."""

    caller_error = False


class ComparisonError(ZooError, ValueError):
    """Versions that cannot be compared: fewer than two, or versions of different models."""


class MissingCardError(ZooError, LookupError):
    """A stored version without a model card (one trained before cards, or whose drawing failed)."""


class DrawingError(ZooError, RuntimeError):
    """A model card figure that could not be drawn from a stored version."""

    caller_error = False
