"""Writing files and folders so that a reader never sees half of one, even after a crash or a power cut.

A file is written to a temp file beside its target, synced, and renamed over it; the folder that holds the rename is
synced too, so the new name survives a crash (POSIX makes a rename durable only once its directory is synced).
A folder (a version, a Triton repository) is built in a staging folder beside its target whose files and entries are
synced before it is renamed into place, and the parent after it.
What a crash leaves behind (the temp and staging names below) is removed by the next write to that model,
once it is older than STALE_SECONDS.

An OSError met while writing becomes the zoo's StorageError here, in `storage_errors`, and nowhere else.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from zoo.core.errors import StorageError, ZooError

# tempfile creates private (0600/0700) entries; published files get the modes the umask allows,
# so that, say, a server running as another user can read them.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

# The names the zoo gives what it is still writing: a version being written (in the model's folder), a card being
# redrawn (in a version's folder), and temp files (stage_beside's `.NAME.XXXX.tmp`, the exporter's
# `.STEM.XXXX.tmp.SUFFIX`).
VERSION_STAGING_PREFIX = ".staging-"
CARD_STAGING_PREFIX = ".card-"
TEMP_FILE_PATTERNS = (".*.tmp", ".*.tmp.*")
# Older than this, such an entry belongs to no live writer: a version's staging lives for its card's drawing, seconds.
STALE_SECONDS = 3600.0


def publish_mode(path: Path) -> None:
    """Give a file or folder made by tempfile the permissions an ordinary open() or mkdir() would have."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_UMASK)


def sync_file(path: Path) -> None:
    """Flush a written file's data to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_folder(path: Path) -> None:
    """Flush a folder's entries (names created, renamed or removed in it) to the disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def stage_beside(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """`write` into a temp file beside `path`, synced and with ordinary permissions; the caller renames it over
    `path` (and syncs the folder: `replace`). A failure removes the temp file and raises."""
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


def temp_beside(path: Path) -> Path:
    """A new empty temp file beside `path` with ordinary permissions, for a writer that opens the file itself (torch,
    onnx); whoever renames it over `path` syncs it first (WeightsStore.commit does)."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    publish_mode(Path(name))
    return Path(name)


def replace(temp: Path, path: Path) -> None:
    """Rename a synced temp file over `path` and sync the folder that holds the new name."""
    os.replace(temp, path)
    sync_folder(path.parent)


def replace_file(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """Write `path` whole or not at all: `write` into a temp file beside it, then rename it over."""
    replace(stage_beside(path, write), path)


def sync_tree(folder: Path) -> None:
    """Sync every file and folder under `folder`, then `folder` itself, so that all of it is on the disk."""
    for root, folders, files in os.walk(folder):
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                sync_file(Path(root, name))
        for name in folders:
            sync_folder(Path(root, name))
    sync_folder(folder)


def publish_folder(staging: Path, final: Path) -> None:
    """Rename a complete staging folder to `final` so that after a crash `final` is either there whole or not at all:
    its files and entries are synced before the rename, and the parent's entry after it. A `final` that exists
    already raises OSError (rename() onto a non-empty folder fails), so a name is claimed once."""
    sync_tree(staging)
    os.rename(staging, final)
    sync_folder(final.parent)


@contextmanager
def staging_folder(parent: Path, prefix: str) -> Iterator[Path]:
    """A new empty folder `prefix`XXXX in `parent` with ordinary permissions, to build something in; on leaving, it is
    removed with whatever is in it, unless it was published (renamed away: `publish_folder`) meanwhile."""
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=prefix))
    try:
        publish_mode(staging)
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


@contextmanager
def staged_folder(target: Path) -> Iterator[Path]:
    """Build `target` whole or not at all: yield a staging folder beside it (`.NAME.staging-XXXX`), then sync it and
    rename it into place (`publish_folder`). An error inside, or a `target` that is a non-empty folder already, leaves
    `target` as it was and removes the staging folder."""
    with staging_folder(target.parent, f".{target.name}.staging-") as staging:
        yield staging
        publish_folder(staging, target)


@contextmanager
def storage_errors(what: str, where: Path | str | None = None,
                   also: tuple[type[Exception], ...] = ()) -> Iterator[None]:
    """Raise an OSError (or one of `also`, a library's own I/O error) from inside as the zoo's StorageError:
    "could not `what` in `where`: reason", naming the file the error names in place of `where` if it names one (with
    no `where`, the message is "could not `what`: reason"). A ZooError passes as it is."""
    caught: tuple[type[Exception], ...] = (OSError, *also)
    try:
        yield
    except ZooError:
        raise
    except caught as error:
        place = None if where is None else getattr(error, "filename", None) or where
        reason = getattr(error, "strerror", None) or str(error)
        raise StorageError(f"could not {what}{'' if place is None else f' in {place}'}: {reason}") from None


def is_leftover(name: str, prefixes: Iterable[str] = (), patterns: Iterable[str] = TEMP_FILE_PATTERNS) -> bool:
    """Whether `name` is one the zoo gives an entry while writing it (a staging prefix, or a temp-file pattern)."""
    return any(name.startswith(prefix) for prefix in prefixes) or any(fnmatch.fnmatchcase(name, p) for p in patterns)


def remove_stale(folder: Path, prefixes: Iterable[str] = (), patterns: Iterable[str] = TEMP_FILE_PATTERNS,
                 older_than: float = STALE_SECONDS, now: float | None = None) -> list[Path]:
    """Remove the entries of `folder` that a crashed writer left (`is_leftover` names) and that have not changed for
    `older_than` seconds; return them. Symlinks are removed, never followed; what cannot be removed is left."""
    prefixes, patterns = tuple(prefixes), tuple(patterns)
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not is_leftover(entry.name, prefixes, patterns):
            continue
        try:
            info = entry.stat(follow_symlinks=False)
            if now - info.st_mtime < older_than:
                continue
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(entry.path)
            else:
                os.unlink(entry.path)
        except OSError:
            continue  # gone already (another writer cleaned it) or not ours to remove: leave it
        removed.append(Path(entry.path))
    return removed
