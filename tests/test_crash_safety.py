"""Writes survive a crash: real `zoo train`, `zoo card` and `zoo export` processes killed with SIGKILL at several
points, and what a reader sees afterwards; what they leave behind is removed by the next write once it is stale."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from serving import ZOO

from zoo.store.atomic import STALE_SECONDS, is_leftover, remove_stale
from zoo.store.versions import WeightsStore

MODEL = "linear-regression"


def kill_when(args: list[str], ready: Callable[[Path], bool], cwd: Path, timeout: float = 240) -> int:
    """Start `zoo ARGS`, SIGKILL it as soon as `ready(its stderr file)` holds (polled, no fixed sleeps), and return
    its exit status; a process that ends before it is killed fails the test."""
    log = cwd / f"stderr-{time.monotonic_ns()}.txt"
    env = {**os.environ, "TTY_COMPATIBLE": "1"}  # rich draws the progress bar into the pipe, so training shows
    with open(log, "wb") as stderr:
        process = subprocess.Popen([str(ZOO), *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + timeout
        try:
            while not ready(log):
                assert process.poll() is None, f"{args} ended ({process.returncode}) before it was killed:\n" \
                                               f"{log.read_text(errors='replace')[-2000:]}"
                assert time.monotonic() < deadline, f"{args}: not ready to kill after {timeout} s"
                time.sleep(0.001)
            process.send_signal(signal.SIGKILL)
            return process.wait(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def exists(pattern: str, folder: Path) -> Callable[[Path], bool]:
    return lambda log: any(folder.glob(pattern))


def leftovers(model_folder: Path) -> set[str]:
    """The hidden entries a writer makes while it writes, found in the model's folder and its versions' folders."""
    found = set()
    for folder in (model_folder, *[p for p in model_folder.iterdir() if p.is_dir() and not p.name.startswith(".")]):
        found |= {str(p.relative_to(model_folder)) for p in folder.iterdir()
                  if is_leftover(p.name, (".staging-", ".card-"))}
    return found


def age(model_folder: Path, names: set[str], seconds: float = 2 * STALE_SECONDS) -> None:
    then = time.time() - seconds
    for name in names:
        os.utime(model_folder / name, (then, then), follow_symlinks=False)


def check_readable(store: WeightsStore, expected: list[int]) -> None:
    """`versions()` lists complete versions only, and every one of them loads with its sha256 checked."""
    assert store.versions(MODEL) == expected
    for version in expected:
        stored = store.load(MODEL, version)  # raises IntegrityError on a sha256 mismatch
        assert stored.manifest["version"] == version and set(stored.state_dict) == {"linear.weight", "linear.bias"}
        assert (stored.path / "README.md").is_file()


@pytest.mark.slow
def test_killed_writes_leave_complete_versions_only_and_the_next_write_removes_stale_leftovers(weights_dir, tmp_path):
    store, folder = WeightsStore(weights_dir), weights_dir / MODEL
    train = ["train", MODEL, "--device", "cpu"]

    # Killed while training mnist-mlp (its progress bar is past step 0 and short of the end): nothing is published.
    colours, steps = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]"), re.compile(rb"(\d+)/(\d+) loss")

    def mid_training(log: Path) -> bool:
        return any(0 < int(done) < int(total) for done, total in steps.findall(colours.sub(b"", log.read_bytes())))

    status = kill_when(["train", "mnist-mlp", "--recipe", "document", "--epochs", "5", "--device", "cpu"],
                       mid_training, tmp_path)
    assert status == -signal.SIGKILL
    assert store.versions("mnist-mlp") == [] and not any((weights_dir / "mnist-mlp").glob("*"))

    assert subprocess.run([str(ZOO), *train], cwd=tmp_path, capture_output=True, timeout=240).returncode == 0
    check_readable(store, [1])

    # Killed once its staging folder holds the weights (the card is being drawn): still only version 1.
    assert kill_when(train, exists(".staging-*/model.safetensors", folder), tmp_path) == -signal.SIGKILL
    staged = leftovers(folder)
    assert len(staged) == 1 and next(iter(staged)).startswith(".staging-")
    check_readable(store, [1])

    # Killed right after the rename that publishes version 2: version 2 is there whole.
    assert kill_when(train, exists("2", folder), tmp_path) == -signal.SIGKILL
    check_readable(store, [1, 2])
    assert leftovers(folder) == staged  # the last write kept the staging folder: it is not an hour old

    # Killed while redrawing a card, and while exporting: hidden staging and temp entries in version 1's folder.
    assert kill_when(["card", f"{MODEL}:1"], exists("1/.card-*", folder), tmp_path) == -signal.SIGKILL
    assert kill_when(["export", f"{MODEL}:1", "-f", "all"], exists("1/.*.tmp*", folder), tmp_path) == -signal.SIGKILL
    left = leftovers(folder)
    assert any(name.startswith("1/.card-") for name in left) and any(".tmp" in name for name in left)
    check_readable(store, [1, 2])
    assert "artifacts" not in store.manifest(MODEL, 1) or store.manifest(MODEL, 1)["artifacts"] == {}

    # The next write to the model (here an export, which commits to version 2) removes what is stale and keeps
    # what is younger than an hour (a writer might still be at it).
    young = {name for name in left if name.startswith("1/.card-")}
    age(folder, left - young)
    exported = subprocess.run([str(ZOO), "export", f"{MODEL}:2"], cwd=tmp_path, capture_output=True, timeout=240)
    assert exported.returncode == 0, exported.stderr
    assert leftovers(folder) == young
    # ... and so does publishing a new version (store.save).
    age(folder, young)
    assert subprocess.run([str(ZOO), *train], cwd=tmp_path, capture_output=True, timeout=240).returncode == 0
    assert leftovers(folder) == set()
    check_readable(store, [1, 2, 3])
    assert set(store.manifest(MODEL, 2)["artifacts"]) == {"onnx"}


def test_remove_stale_removes_only_the_zoos_own_names_and_never_follows_symlinks(tmp_path):
    folder = tmp_path / "model"
    (folder / ".staging-abc").mkdir(parents=True)
    (folder / ".staging-abc" / "model.safetensors").write_bytes(b"half")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("not the zoo's")
    (folder / ".staging-link").symlink_to(outside, target_is_directory=True)
    for name in ("1", "notes.tmp", ".manifest.lock", ".staging-young"):
        (folder / name).mkdir() if name in ("1", ".staging-young") else (folder / name).write_text("x")
    now = time.time()
    for name in (".staging-abc", ".staging-link", "1", "notes.tmp", ".manifest.lock"):
        os.utime(folder / name, (now - 7200, now - 7200), follow_symlinks=False)
    removed = remove_stale(folder, prefixes=(".staging-",), now=now)
    assert {p.name for p in removed} == {".staging-abc", ".staging-link"}
    assert sorted(p.name for p in folder.iterdir()) == [".manifest.lock", ".staging-young", "1", "notes.tmp"]
    assert (outside / "keep.txt").read_text() == "not the zoo's"
