"""Versioned weights on disk, laid out like a Triton model repository: ROOT/MODEL/N/{model.safetensors, manifest.json}.

Where versions live: the weights root is `--weights-dir`, else $ZOO_WEIGHTS_DIR, else the per-user data folder
(~/.local/share/zoo/weights on Linux). With the per-user default, the released versions that ship inside the
package are seen beside the user's own: they are read-only, keep their numbers, and a new version takes the
next number after every version of either, so it is the latest. An explicit root is that root alone.

A version is published by renaming a synced staging folder to its number (zoo.store.atomic.publish_folder); what a
killed writer leaves (staging folders, temp files) is removed by the next write to that model once it is an hour old.
Version numbers, in folder names and in references, are ASCII digits without a leading zero.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

import platformdirs
from safetensors import SafetensorError

from zoo.core.errors import Call, IntegrityError, ReadOnlyVersionError, Setting, UnknownVersionError
from zoo.core.reference import ModelRef, is_version_number
from zoo.store.atomic import (
    CARD_STAGING_PREFIX,
    VERSION_STAGING_PREFIX,
    publish_folder,
    publish_mode,
    remove_stale,
    replace,
    staging_folder,
    storage_errors,
    sync_file,
    sync_folder,
)
from zoo.store.manifest import MANIFEST_FILE, Manifest, read_manifest, stage_manifest, version_file, write_manifest

if TYPE_CHECKING:  # torch is imported where tensors are read or written, so listing versions never loads it
    import torch

WEIGHTS_FILE = "model.safetensors"


def save_file(tensors: dict[str, torch.Tensor], filename: str, metadata: dict[str, str] | None = None) -> None:
    """safetensors' writer, imported when a version is written (it imports torch)."""
    from safetensors.torch import save_file as write

    write(tensors, filename, metadata=metadata)


def load_file(filename: str, device: str = "cpu") -> dict[str, torch.Tensor]:
    """safetensors' reader, imported when a version's tensors are read (it imports torch)."""
    from safetensors.torch import load_file as read

    return read(filename, device=device)


def released_weights_dir() -> Path:
    """The versions released with the zoo: package data of an installed zoo, else the checkout's weights/."""
    package = Path(__file__).resolve().parent.parent  # zoo/
    installed = package / "weights"
    return installed if installed.is_dir() else package.parent / "weights"


RELEASED_WEIGHTS = released_weights_dir()


def user_weights_dir() -> Path:
    """Where a user's own versions go when no root is named: the per-user data folder (XDG on Linux)."""
    return platformdirs.user_data_path("zoo") / "weights"


def parse_ref(ref: str) -> tuple[str, int | None]:
    """Split `MODEL[:VERSION]` into the name and the version (None means latest); ModelRef.parse is the parser."""
    parsed = ModelRef.parse(ref)
    return parsed.name, parsed.version


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str) -> None:
    """Raise IntegrityError unless the file at `path` has the sha256 its manifest recorded."""
    try:
        actual = sha256_file(path)
    except FileNotFoundError:
        raise IntegrityError(
            f"{path} is listed in its manifest but missing; restore it or remove the version folder"
        ) from None
    if actual != expected:
        raise IntegrityError(f"{path} does not match its manifest: expected sha256 {expected}, got {actual}")


@dataclass
class StoredVersion:
    """One version read back from the store: where it is, its manifest and its tensors."""

    name: str
    version: int
    path: Path
    manifest: Manifest
    state_dict: dict[str, torch.Tensor]


class WeightsStore:
    """Numbered weight versions per model; each version is written whole or not at all.

    `root` (else $ZOO_WEIGHTS_DIR) is the one folder read and written; with neither, the user's folder is
    written and the released versions are read beside it (module docstring: the rule for numbers).
    """

    def __init__(self, root: os.PathLike | str | None = None) -> None:
        explicit = root or os.environ.get("ZOO_WEIGHTS_DIR")
        self.root = Path(explicit).expanduser() if explicit else user_weights_dir()
        self.released: Path | None = None if explicit else RELEASED_WEIGHTS

    @classmethod
    def at(cls, weights: WeightsLocation) -> WeightsStore:
        """`weights` itself when it is a store, else the store of that root (None: the default folders)."""
        return weights if isinstance(weights, WeightsStore) else cls(weights)

    @property
    def named_root(self) -> Path | None:
        """The one root this store was named (by argument or $ZOO_WEIGHTS_DIR), None for the default folders: what
        rebuilds the same store in another process."""
        return None if self.released else self.root

    @property
    def where(self) -> str:
        """The folders this store reads, for messages."""
        return f"{self.root} or the released versions in {self.released}" if self.released else str(self.root)

    def _versions_in(self, root: Path | None, name: str) -> list[int]:
        folder = root / name if root else None
        if folder is None or not folder.is_dir():
            return []
        return [
            int(entry.name)
            for entry in folder.iterdir()
            if is_version_number(entry.name) and (entry / MANIFEST_FILE).is_file()
        ]

    def is_released(self, name: str, version: int) -> bool:
        """Whether `version` is a read-only released version (one of the user's own of that number shadows it)."""
        return (
            self.released is not None
            and not (self.root / name / str(version) / MANIFEST_FILE).is_file()
            and (self.released / name / str(version) / MANIFEST_FILE).is_file()
        )

    def version_dir(self, name: str, version: int) -> Path:
        if self.released is not None and self.is_released(name, version):
            return self.released / name / str(version)
        return self.root / name / str(version)

    def versions(self, name: str) -> list[int]:
        """Complete versions of `name`, the user's and the released, oldest first (folders without a manifest are
        not versions)."""
        return sorted(set(self._versions_in(self.root, name)) | set(self._versions_in(self.released, name)))

    def resolve(self, name: str, version: int | None) -> int:
        """`version` if it exists, the latest when None; raise naming what exists otherwise."""
        known = self.versions(name)
        if version is None:
            if not known:
                fix = Call("train", name)
                raise UnknownVersionError(
                    f"no trained versions of {name!r} in {self.where}; train one first ({fix})", settings=(fix,)
                )
            return known[-1]
        if version not in known:
            have = ", ".join(map(str, known)) or "none"
            raise UnknownVersionError(f"{name!r} has no version {version} in {self.where}; versions present: {have}")
        return version

    def manifest(self, name: str, version: int) -> Manifest:
        return read_manifest(self.version_dir(name, version) / MANIFEST_FILE)

    def save(
        self,
        name: str,
        state_dict: dict[str, torch.Tensor],
        manifest: Manifest,
        before_publish: Callable[[Path, Manifest], None] | None = None,
    ) -> int:
        """Write a new version and return its number; concurrent savers each get their own number.

        `before_publish(staging, manifest)` may add files to the staging folder and keys to the manifest just before
        the version is claimed, so they are in it from the moment it appears (it runs again if the number it was
        given is taken meanwhile). A disk that is full or unwritable raises StorageError naming the path, and leaves
        no trace.
        """
        folder = self.root / name
        what = f"write a new version of {name}"
        with storage_errors(what, folder, also=(SafetensorError,)):
            folder.mkdir(parents=True, exist_ok=True)
            self.remove_leftovers(name)
            with staging_folder(folder, VERSION_STAGING_PREFIX) as staging, \
                    storage_errors(what, staging, also=(SafetensorError,)):
                weights = staging / WEIGHTS_FILE
                tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
                save_file(tensors, str(weights), metadata={"model": name})
                publish_mode(weights)
                manifest = {
                    **manifest,
                    "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(weights), "bytes": weights.stat().st_size},
                }
                return self._claim(name, staging, manifest, before_publish)

    def _claim(self, name: str, staging: Path, manifest: Manifest,
               before_publish: Callable[[Path, Manifest], None] | None) -> int:
        """Publish `staging` as the next free version of `name` and return its number."""
        folder = staging.parent
        taken = set(self._versions_in(self.released, name))
        version = max(self.versions(name), default=0) + 1
        while True:
            record: Manifest = {"model": name, "version": version, **manifest}
            if before_publish is not None:
                before_publish(staging, record)
            write_manifest(staging / MANIFEST_FILE, record)
            try:
                # rename() of a folder onto an existing non-empty one fails, so the number is claimed atomically;
                # the weights, the staging folder and, after the rename, the model's folder are synced.
                publish_folder(staging, folder / str(version))
                return version
            except OSError:  # not a StorageError yet: a number taken meanwhile is the next number's turn
                if not (folder / str(version)).exists():
                    raise
                version += 1
                while version in taken:
                    version += 1

    def remove_leftovers(self, name: str) -> list[Path]:
        """Remove what killed writers left in `name`'s folder of this store's root (staging folders of versions and
        cards, temp files) once it is older than an hour (zoo.store.atomic.STALE_SECONDS); return what was removed.
        Released versions are never touched."""
        folder = self.root / name
        removed = remove_stale(folder, prefixes=(VERSION_STAGING_PREFIX,), patterns=())
        for version in self._versions_in(self.root, name):
            removed += remove_stale(folder / str(version), prefixes=(CARD_STAGING_PREFIX,))
        return removed

    def load(self, name: str, version: int | None = None, device: str | torch.device = "cpu") -> StoredVersion:
        """Read a version's manifest and tensors, checking the weights' sha256 first; never unpickles."""
        version = self.resolve(name, version)
        path = self.version_dir(name, version)
        manifest = self.manifest(name, version)
        weights = version_file(path, manifest["weights"]["file"], "weights.file")
        check_sha256(weights, manifest["weights"]["sha256"])
        return StoredVersion(name, version, path, manifest, load_file(str(weights), device=str(device)))

    def check_writable(self, name: str, version: int) -> None:
        """Raise ReadOnlyVersionError for a released version, saying what it ships with."""
        if self.is_released(name, version):
            shipped = ", ".join(sorted(self.manifest(name, version).get("artifacts", {}))) or "no"
            fix = Setting("weights_dir")
            raise ReadOnlyVersionError(
                f"{name}:{version} is a released version, read-only in {self.released}; it ships with {shipped} "
                f"exports. Train your own version of {name} to export it, or pass {fix} to name a root you own",
                settings=(fix,),
            )

    def commit(self, name: str, version: int, staged: dict[Path, Path], change: Callable[[Manifest], None]) -> Manifest:
        """Move staged files (temp path -> final path) into a version and apply `change` to its manifest.

        Under the manifest's lock, the new manifest is written to a temp file first, so a full disk fails before
        anything moves; renames within the folder need no space. Moved entries leave `staged`.
        """
        self.check_writable(name, version)
        path = self.version_dir(name, version)
        from filelock import FileLock  # here: listing versions (completion, `zoo list`) never locks

        with storage_errors(f"update {path}"), FileLock(str(path / ".manifest.lock")):
            self.remove_leftovers(name)
            manifest = self.manifest(name, version)
            change(manifest)
            new_manifest = stage_manifest(path / MANIFEST_FILE, manifest)
            staged[new_manifest] = path / MANIFEST_FILE
            moved_into: set[Path] = set()
            for temp, final in list(staged.items()):
                if final.parent != path:
                    final.parent.mkdir(exist_ok=True)
                if final == path / MANIFEST_FILE:
                    # The files it lists are in place and synced before the manifest that lists them.
                    for parent in moved_into:
                        sync_folder(parent)
                    replace(temp, final)
                else:
                    sync_file(temp)  # the exporter's files are written by torch and onnx, unsynced
                    os.replace(temp, final)
                    moved_into.add(final.parent)
                del staged[temp]
        return manifest


# What a public function takes for its weights: a store, the root folder of one, or None for the default folders
# (WeightsStore.at makes the store, once, at the public entry).
WeightsLocation: TypeAlias = WeightsStore | os.PathLike[str] | str | None
