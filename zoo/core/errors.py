"""The zoo's exceptions: one base, a few kinds, each message saying what was expected and what came.

Every kind says whose fault it is in `caller_error`: True for a mistake in what the caller asked for (a name,
a value, an input), False for a fault of files or data on disk. The CLI turns that into exit 2 or exit 1,
the server into a 4xx or a 500; nothing else needs to know the kinds.

Messages speak Python: a setting that would fix the error is named as the parameter it is (`device='cpu'`), and
carried in `settings`, so that a front end that spells parameters its own way (the CLI's flags) says it in its own
words where it shows the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar


@dataclass(frozen=True)
class Setting:
    """A parameter (and the value) an error's message names as a fix: `str()` is how the message spells it."""

    parameter: str
    value: Any = None  # None: the parameter itself, with no value in mind

    def __str__(self) -> str:
        return self.parameter if self.value is None else f"{self.parameter}={self.value!r}"

    def spelled(self, spell: dict[str, str]) -> str | None:
        """The setting in a front end's words (`spell[parameter]`, then the value; a list's values each after its
        own), or None where `spell` does not name the parameter."""
        words = spell.get(self.parameter)
        if words is None or self.value is None:
            return words
        values = self.value if isinstance(self.value, (list, tuple)) else [self.value]
        return " ".join(f"{words} {value}" for value in values)


@dataclass(frozen=True)
class Call:
    """A call of the zoo's API that an error's message names as a fix: `str()` is how the message spells it,
    e.g. export('lenet:1', formats=['pt2']); a front end with a command for `function` says that command instead,
    with its settings as its own flags (the CLI: zoo export lenet:1 --format pt2)."""

    function: str
    ref: str | None = None  # the model or version it is called on; None: the caller's own, shown as ...
    settings: tuple[Setting, ...] = ()

    def __str__(self) -> str:
        arguments = ["..." if self.ref is None else repr(self.ref), *map(str, self.settings)]
        return f"{self.function}({', '.join(arguments)})"

    def spelled(self, spell: dict[str, str]) -> str | None:
        """The call as `spell[function]` with the reference and each setting in `spell`'s words, or None where
        `spell` has no command for `function`."""
        command = spell.get(self.function)
        if command is None:
            return None
        words = [command, *([] if self.ref is None else [self.ref])]
        words += [setting.spelled(spell) or str(setting) for setting in self.settings]
        return " ".join(words)


class ZooError(Exception):
    """Base of every error the zoo raises on purpose; `settings` are the parameters (and calls) its message names
    as fixes."""

    caller_error: ClassVar[bool] = True

    def __init__(self, message: str = "", *, settings: tuple[Setting | Call, ...] = ()) -> None:
        super().__init__(message)
        self.settings = settings

    def spelled(self, spell: dict[str, str]) -> str:
        """The message with each setting and call that `spell` names said in that front end's words:
        `spell[parameter]` for a parameter, with the value after it (the CLI: {"device": "--device"} turns
        device='cpu' into --device cpu), and `spell[function]` for a call (Call.spelled)."""
        message = str(self)
        for fix in self.settings:
            words = fix.spelled(spell)
            if words is not None:
                message = message.replace(str(fix), words)
        return message


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
