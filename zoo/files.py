"""Writing files so that a reader never sees half of one: a temp file beside the target, renamed over it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import IO, Callable

# tempfile creates private (0600/0700) entries; published files get the modes the umask allows,
# so that, say, a server running as another user can read them.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def publish_mode(path: Path) -> None:
    """Give a file or folder made by tempfile the permissions an ordinary open() or mkdir() would have."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_UMASK)


def stage_beside(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """`write` into a temp file beside `path`, synced and with ordinary permissions; the caller renames it over
    `path`. A failure removes the temp file and raises."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        publish_mode(Path(temp))
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return Path(temp)


def replace_file(path: Path, write: Callable[[IO[bytes]], None]) -> None:
    """Write `path` whole or not at all: `write` into a temp file beside it, then rename it over."""
    os.replace(stage_beside(path, write), path)
