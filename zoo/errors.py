"""The zoo's exceptions: one base, a few kinds, each message saying what was expected and what came."""

from __future__ import annotations


class ZooError(Exception):
    """Base of every error the zoo raises on purpose."""


class UnknownModelError(ZooError, LookupError):
    """A model name that is not in the registry."""


class UnknownRecipeError(ZooError, LookupError):
    """A recipe name that the model does not have."""


class UnknownVersionError(ZooError, LookupError):
    """A weights version that is malformed or not in the store."""


class InvalidOverrideError(ZooError, ValueError):
    """A hyperparameter override with an unknown key or a bad value."""


class DataNotFoundError(ZooError, FileNotFoundError):
    """A data set that is neither on disk nor downloadable."""


class DeviceUnavailableError(ZooError, RuntimeError):
    """A device that this machine does not have."""


class IntegrityError(ZooError, ValueError):
    """Weights on disk that do not match their manifest."""


class ExportError(ZooError, RuntimeError):
    """A model or format that cannot be exported, or an export that failed verification."""


class InvalidInputError(ZooError, ValueError):
    """Inference input of the wrong shape, type or content."""
