import json
import os
import threading

import pytest
import torch

import zoo
from zoo.store import versions as store_module
from zoo.store.versions import WeightsStore, parse_ref


def tensors():
    return {"w": torch.arange(6.0).reshape(2, 3)}


def test_versions_count_up_and_load_back(weights_dir):
    store = WeightsStore(weights_dir)
    assert [store.save("m", tensors(), {"metrics": {}}) for _ in range(3)] == [1, 2, 3]
    loaded = store.load("m")
    assert loaded.version == 3 and torch.equal(loaded.state_dict["w"], tensors()["w"])
    manifest = json.loads((weights_dir / "m" / "3" / "manifest.json").read_text())
    assert manifest["model"] == "m" and manifest["version"] == 3
    assert manifest["weights"]["sha256"] == store_module.sha256_file(weights_dir / "m" / "3" / "model.safetensors")


def test_concurrent_saves_never_clash(weights_dir):
    store = WeightsStore(weights_dir)
    results: list[int] = []
    threads = [threading.Thread(target=lambda: results.append(store.save("m", tensors(), {}))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(1, 9))
    assert store.versions("m") == list(range(1, 9))


def test_a_save_that_fails_leaves_nothing(weights_dir, monkeypatch):
    store = WeightsStore(weights_dir)
    store.save("m", tensors(), {})

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_module, "save_file", crash)
    with pytest.raises(OSError):
        store.save("m", tensors(), {})
    assert sorted(os.listdir(weights_dir / "m")) == ["1"]


def test_half_written_folders_are_not_versions(weights_dir):
    (weights_dir / "m" / ".staging-abc").mkdir(parents=True)
    (weights_dir / "m" / "7").mkdir()  # no manifest: a crash or a hand-made folder
    store = WeightsStore(weights_dir)
    assert store.versions("m") == []
    assert store.save("m", tensors(), {}) == 1


def test_tampered_weights_are_refused(weights_dir):
    store = WeightsStore(weights_dir)
    store.save("m", tensors(), {})
    path = weights_dir / "m" / "1" / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.IntegrityError, match="does not match its manifest: expected sha256"):
        store.load("m", 1)


@pytest.mark.parametrize(
    "ref,expected",
    [("mnist-mlp", ("mnist-mlp", None)), ("mnist-mlp:3", ("mnist-mlp", 3)), ("lenet:latest", ("lenet", None))],
)
def test_refs_parse(ref, expected):
    assert parse_ref(ref) == expected


@pytest.mark.parametrize("ref", ["mnist-mlp:x", "mnist-mlp:0", "mnist-mlp:-1", "mnist-mlp:1.5", ":3", "a:b:c", ""])
def test_malformed_refs_raise(ref):
    with pytest.raises(zoo.UnknownVersionError, match="malformed"):
        parse_ref(ref)


def test_missing_versions_name_what_exists(weights_dir):
    store = WeightsStore(weights_dir)
    with pytest.raises(zoo.UnknownVersionError, match="no trained versions of 'm'"):
        store.resolve("m", None)
    store.save("m", tensors(), {})
    with pytest.raises(zoo.UnknownVersionError, match="versions present: 1"):
        store.resolve("m", 4)


def test_versions_are_readable_like_ordinary_files(weights_dir):
    store = WeightsStore(weights_dir)
    store.save("m", tensors(), {})
    folder = weights_dir / "m" / "1"
    assert folder.stat().st_mode & 0o755 == 0o755
    for name in ("model.safetensors", "manifest.json"):
        assert (folder / name).stat().st_mode & 0o644 == 0o644
