"""Versioned weights on disk, laid out like a Triton model repository: ROOT/MODEL/N/{model.safetensors, manifest.json}."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import torch
from filelock import FileLock
from safetensors.torch import load_file, save_file

from zoo.errors import IntegrityError, UnknownVersionError

WEIGHTS_FILE = "model.safetensors"
MANIFEST_FILE = "manifest.json"
PROJECT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
# tempfile creates private (0600/0700) entries; published versions get the modes the umask allows,
# so that, say, a server running as another user can read them.
_UMASK = os.umask(0o022)
os.umask(_UMASK)
_REF = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)(?::(?P<version>[^:]*))?$")


def resolve_weights_dir(weights_dir: Optional[os.PathLike | str] = None) -> Path:
    """`weights_dir`, else $ZOO_WEIGHTS_DIR, else the project's own weights/ folder."""
    if weights_dir:
        return Path(weights_dir).expanduser()
    if os.environ.get("ZOO_WEIGHTS_DIR"):
        return Path(os.environ["ZOO_WEIGHTS_DIR"]).expanduser()
    return PROJECT_WEIGHTS


def parse_ref(ref: str) -> tuple[str, Optional[int]]:
    """Split `MODEL[:VERSION]` into the name and the version (None means latest)."""
    match = _REF.match(ref.strip())
    if not match:
        raise UnknownVersionError(f"malformed model reference {ref!r}: expected MODEL or MODEL:VERSION, e.g. mnist-mlp:3")
    version = match.group("version")
    if version is None or version == "latest":
        return match.group("name"), None
    if not version.isdigit() or int(version) < 1:
        raise UnknownVersionError(
            f"malformed version {version!r} in {ref!r}: expected a whole number >= 1 or 'latest'"
        )
    return match.group("name"), int(version)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def publish_mode(path: Path) -> None:
    """Give a file or folder made by tempfile the permissions an ordinary open() or mkdir() would have."""
    os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~_UMASK)


def check_sha256(path: Path, expected: str) -> None:
    """Raise IntegrityError unless the file at `path` has the sha256 its manifest recorded."""
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(f"{path} does not match its manifest: expected sha256 {expected}, got {actual}")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON beside `path` and rename it over, so a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=False)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        publish_mode(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass
class StoredVersion:
    """One version read back from the store: where it is, its manifest and its tensors."""

    name: str
    version: int
    path: Path
    manifest: dict[str, Any]
    state_dict: dict[str, torch.Tensor]


class WeightsStore:
    """Numbered weight versions per model; each version is written whole or not at all."""

    def __init__(self, root: Optional[os.PathLike | str] = None) -> None:
        self.root = resolve_weights_dir(root)

    def version_dir(self, name: str, version: int) -> Path:
        return self.root / name / str(version)

    def versions(self, name: str) -> list[int]:
        """Complete versions of `name`, oldest first (folders without a manifest are not versions)."""
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(
            int(entry.name)
            for entry in folder.iterdir()
            if entry.name.isdigit() and (entry / MANIFEST_FILE).is_file()
        )

    def resolve(self, name: str, version: Optional[int]) -> int:
        """`version` if it exists, the latest when None; raise naming what exists otherwise."""
        known = self.versions(name)
        if version is None:
            if not known:
                raise UnknownVersionError(
                    f"no trained versions of {name!r} in {self.root}; train one first (zoo train {name})"
                )
            return known[-1]
        if version not in known:
            have = ", ".join(map(str, known)) or "none"
            raise UnknownVersionError(f"{name!r} has no version {version} in {self.root}; versions present: {have}")
        return version

    def manifest(self, name: str, version: int) -> dict[str, Any]:
        with open(self.version_dir(name, version) / MANIFEST_FILE) as handle:
            return json.load(handle)

    def save(self, name: str, state_dict: dict[str, torch.Tensor], manifest: dict[str, Any]) -> int:
        """Write a new version and return its number; concurrent savers each get their own number."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=folder, prefix=".staging-"))
        try:
            weights = staging / WEIGHTS_FILE
            tensors = {key: value.detach().cpu().contiguous() for key, value in state_dict.items()}
            save_file(tensors, str(weights), metadata={"model": name})
            publish_mode(weights)
            publish_mode(staging)
            manifest = {
                **manifest,
                "weights": {"file": WEIGHTS_FILE, "sha256": sha256_file(weights), "bytes": weights.stat().st_size},
            }
            version = (self.versions(name) or [0])[-1] + 1
            while True:
                write_json_atomic(staging / MANIFEST_FILE, {"model": name, "version": version, **manifest})
                try:
                    # rename() of a folder onto an existing non-empty one fails, so the number is claimed atomically.
                    os.rename(staging, folder / str(version))
                    return version
                except OSError:
                    if not (folder / str(version)).exists():
                        raise
                    version += 1
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def load(self, name: str, version: Optional[int] = None, device: str | torch.device = "cpu") -> StoredVersion:
        """Read a version's manifest and tensors, checking the weights' sha256 first; never unpickles."""
        version = self.resolve(name, version)
        path = self.version_dir(name, version)
        manifest = self.manifest(name, version)
        weights = path / manifest["weights"]["file"]
        check_sha256(weights, manifest["weights"]["sha256"])
        return StoredVersion(name, version, path, manifest, load_file(str(weights), device=str(device)))

    def update_manifest(self, name: str, version: int, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        """Apply `change` to a version's manifest under a lock, writing the result atomically."""
        path = self.version_dir(name, version)
        with FileLock(str(path / ".manifest.lock")):
            manifest = self.manifest(name, version)
            change(manifest)
            write_json_atomic(path / MANIFEST_FILE, manifest)
        return manifest
