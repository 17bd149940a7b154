"""A reference to a stored model version, `NAME[:VERSION]`: parsed once where it comes in, passed inward as a value.

Version numbers, in folder names and in references, are ASCII digits without a leading zero.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from zoo.core.errors import UnknownVersionError

_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<version>[^:]*))?$")
# str.isdigit() and int() also take other scripts' digits ('١' is 1) and superscripts ('²' makes int() raise).
# At most 18 digits: int() of a longer one is slow, and past 4,300 digits it raises.
_VERSION = re.compile(r"[1-9][0-9]{0,17}")


def is_version_number(text: str) -> bool:
    """Whether `text` is a version number as the zoo writes one: ASCII digits, no sign, no leading zero."""
    return _VERSION.fullmatch(text) is not None


@dataclass(frozen=True)
class ModelRef:
    """A model's name and one of its versions; `version` None means the latest. `str()` gives `NAME[:VERSION]`."""

    name: str
    version: int | None = None

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """`MODEL`, `MODEL:latest` or `MODEL:VERSION`; anything else is the caller's mistake (UnknownVersionError)."""
        match = _REF.match(text.strip())
        if not match:
            raise UnknownVersionError(
                f"malformed model reference {text!r}: expected MODEL or MODEL:VERSION, e.g. mnist-mlp:3"
            )
        version = match.group("version")
        if version is None or version == "latest":
            return cls(match.group("name"))
        if not is_version_number(version):
            raise UnknownVersionError(
                f"malformed version {version!r} in {text!r}: expected a whole number >= 1 in ASCII digits without a "
                "leading zero (e.g. 3), or 'latest'"
            )
        return cls(match.group("name"), int(version))

    @classmethod
    def of(cls, ref: ModelRef | str) -> ModelRef:
        """`ref` itself, or the reference a string names: how a public function takes either."""
        return ref if isinstance(ref, ModelRef) else cls.parse(ref)

    def at(self, version: int) -> ModelRef:
        """This model at `version` (a latest reference once it is resolved)."""
        return ModelRef(self.name, version)

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name}:{self.version}"
