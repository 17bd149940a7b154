import json
import os
import re
import threading
import time

import pytest
import torch

import zoo
from zoo.store import versions as store_module
from zoo.store.atomic import STALE_SECONDS
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
    where = re.escape(str(weights_dir / "m"))
    with pytest.raises(zoo.StorageError, match=f"could not write a new version of m in {where}.*: disk full"):
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
    with pytest.raises(zoo.UnknownVersionError, match=f"no trained versions of 'm' in {re.escape(str(weights_dir))};"):
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


def test_a_number_claimed_meanwhile_is_retried_with_the_next_and_before_publish_runs_again(weights_dir):
    """A forced collision: while the first writer prepares version 1, a second writer publishes version 1 itself.
    The first must take 2, and its staged files must be redone for 2 (before_publish sees the number it gets)."""
    store = WeightsStore(weights_dir)
    given: list[int] = []

    def stage_note(staging, record) -> None:
        given.append(record["version"])
        (staging / "note.txt").write_text(f"version {record['version']}")
        if len(given) == 1:  # the other writer claims this very number first
            assert store.save("m", {"w": torch.zeros(1)}, {"by": "the other writer"}) == record["version"]

    assert store.save("m", tensors(), {"by": "me"}, before_publish=stage_note) == 2
    assert given == [1, 2]
    for version, writer in ((1, "the other writer"), (2, "me")):
        manifest = store.manifest("m", version)
        assert manifest["version"] == version and manifest["by"] == writer
    assert (weights_dir / "m" / "2" / "note.txt").read_text() == "version 2"
    assert torch.equal(store.load("m", 2).state_dict["w"], tensors()["w"])
    assert sorted(p.name for p in (weights_dir / "m").iterdir()) == ["1", "2"]  # no staging folder left


def test_a_collision_skips_the_released_numbers(weights_dir, tmp_path, monkeypatch):
    """With released versions beside the user's, a retried number never takes one of theirs."""
    released = tmp_path / "released"
    for _ in range(2):
        WeightsStore(released / "x").save("m", tensors(), {})  # numbers 1 and 2 under released/x/m
    monkeypatch.setattr(store_module, "RELEASED_WEIGHTS", released / "x")
    monkeypatch.delenv("ZOO_WEIGHTS_DIR")
    monkeypatch.setattr(store_module, "user_weights_dir", lambda: weights_dir)
    store = WeightsStore()
    assert store.released == released / "x" and store.root == weights_dir
    claimed: list[int] = []

    def collide(staging, record) -> None:
        claimed.append(record["version"])
        if len(claimed) == 1:
            (weights_dir / "m" / "3").mkdir()  # taken by another writer meanwhile (not yet a version: no manifest)
            (weights_dir / "m" / "3" / "model.safetensors").write_bytes(b"theirs")

    assert store.save("m", tensors(), {}, before_publish=collide) == 4
    assert claimed == [3, 4] and store.versions("m") == [1, 2, 4]
    # The released versions are read from their own folder and refused for writing; the user's are not.
    assert store.is_released("m", 1) and not store.is_released("m", 4)
    assert store.version_dir("m", 2) == released / "x" / "m" / "2"
    assert store.version_dir("m", 4) == weights_dir / "m" / "4"
    assert torch.equal(store.load("m", 1).state_dict["w"], tensors()["w"])
    with pytest.raises(zoo.ReadOnlyVersionError, match="m:1 is a released version, read-only.*ships with no exports"):
        store.check_writable("m", 1)
    store.check_writable("m", 4)


@pytest.mark.slow
def test_a_training_run_that_loses_its_number_publishes_the_next_with_a_card_naming_it(weights_dir, monkeypatch):
    """Two runs meet at the rename: another run publishes version 1 while this one is about to. This one's
    version is 2, and its card (drawn in its staging folder for version 1) is redrawn for 2."""
    from zoo.store import atomic as files

    real_publish = store_module.publish_folder
    raced: list[str] = []

    def racing(staging, final) -> None:
        if not raced:
            raced.append(final.name)
            other = zoo.train("linear-regression", overrides={"seed": 3}, weights_dir=str(weights_dir))
            assert other.version == 1
        real_publish(staging, final)

    monkeypatch.setattr(store_module, "publish_folder", racing)
    mine = zoo.train("linear-regression", weights_dir=str(weights_dir))
    assert raced == ["1"] and mine.version == 2
    store = WeightsStore(weights_dir)
    for version, seed in ((1, 3), (2, mine.manifest["seed"])):
        manifest = store.manifest("linear-regression", version)
        assert manifest["version"] == version and manifest["seed"] == seed
        card = (weights_dir / "linear-regression" / str(version) / "README.md").read_text()
        other = 3 - version
        assert f"linear-regression:{version}" in card and f"linear-regression:{other}" not in card, version
        for figure in manifest["card"]["figures"]:
            assert (weights_dir / "linear-regression" / str(version) / figure).is_file()
    assert mine.manifest["seed"] != 3
    assert not [p for p in (weights_dir / "linear-regression").iterdir() if files.is_leftover(p.name, (".staging-",))]


def test_a_save_interrupted_by_any_exception_leaves_nothing(weights_dir):
    """Not only disk errors: whatever before_publish raises (here a KeyboardInterrupt, as Ctrl-C would), the staging
    folder goes and no number is claimed."""
    store = WeightsStore(weights_dir)

    def interrupted(staging, record) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.save("m", tensors(), {}, before_publish=interrupted)
    assert os.listdir(weights_dir / "m") == [] and store.versions("m") == []


def test_commit_moves_staged_files_in_and_changes_the_manifest_under_its_lock(weights_dir):
    """What an export does to a version: files staged beside it (one into a subfolder that does not exist yet) move
    in, and the manifest changes, all in one commit."""
    store = WeightsStore(weights_dir)
    store.save("m", tensors(), {"artifacts": {}})
    folder = weights_dir / "m" / "1"
    staged = {}
    for final, text in ((folder / "model.onnx", "graph"), (folder / "test_data_set_0" / "input_0.pb", "tensor"),
                        (folder / "test_data_set_0" / "output_0.pb", "answer")):
        temp = folder / f".{final.name}.tmp"
        temp.write_text(text)
        staged[temp] = final

    def record(manifest) -> None:
        manifest["artifacts"]["onnx"] = {"file": "model.onnx"}

    manifest = store.commit("m", 1, staged, record)
    assert staged == {} and manifest["artifacts"] == {"onnx": {"file": "model.onnx"}}
    assert store.manifest("m", 1)["artifacts"] == {"onnx": {"file": "model.onnx"}}
    assert (folder / "model.onnx").read_text() == "graph"
    assert (folder / "test_data_set_0" / "input_0.pb").read_text() == "tensor"
    assert (folder / "test_data_set_0" / "output_0.pb").read_text() == "answer"
    assert sorted(p.name for p in folder.iterdir() if p.name.startswith(".")) == [".manifest.lock"]


def test_remove_leftovers_removes_stale_staging_and_card_folders_and_keeps_young_ones(weights_dir):
    """What killed writers leave: a version's staging folder beside the versions, a card's inside a version."""
    store = WeightsStore(weights_dir)
    store.save("m", tensors(), {})
    folder = weights_dir / "m"
    for path in (folder / ".staging-old", folder / ".staging-young", folder / "1" / ".card-old",
                 folder / "1" / ".card-young"):
        path.mkdir()
    hour_ago = time.time() - 2 * STALE_SECONDS
    for path in (folder / ".staging-old", folder / "1" / ".card-old"):
        os.utime(path, (hour_ago, hour_ago))
    assert sorted(p.name for p in store.remove_leftovers("m")) == [".card-old", ".staging-old"]
    assert sorted(p.name for p in folder.iterdir()) == [".staging-young", "1"]
    assert ".card-young" in os.listdir(folder / "1") and ".card-old" not in os.listdir(folder / "1")


def test_a_commit_that_cannot_move_a_file_is_a_storage_error_and_keeps_the_manifest(weights_dir):
    store = WeightsStore(weights_dir)
    store.save("m", tensors(), {"artifacts": {}})
    folder = weights_dir / "m" / "1"
    vanished = folder / ".model.onnx.tmp"  # staged, then removed before the commit (a disk error would do the same)

    def record(manifest) -> None:
        manifest["artifacts"]["onnx"] = {"file": "model.onnx"}

    where = re.escape(str(folder))
    with pytest.raises(zoo.StorageError, match=f"could not update {where}: No such file or directory$"):
        store.commit("m", 1, {vanished: folder / "model.onnx"}, record)
    assert store.manifest("m", 1)["artifacts"] == {}


def test_a_weights_file_listed_but_missing_is_an_integrity_error(weights_dir):
    store = WeightsStore(weights_dir)
    store.save("m", tensors(), {})
    (weights_dir / "m" / "1" / "model.safetensors").unlink()
    with pytest.raises(zoo.IntegrityError, match="model.safetensors is listed in its manifest but missing"):
        store.load("m", 1)


@pytest.mark.parametrize("text,ref", [("mnist-mlp", zoo.ModelRef("mnist-mlp")), ("lenet:latest", zoo.ModelRef("lenet")),
                                      ("mnist-mlp:3", zoo.ModelRef("mnist-mlp", 3))])
def test_a_model_ref_is_parsed_once_and_printed_back(text, ref):
    assert zoo.ModelRef.parse(text) == ref
    assert zoo.ModelRef.of(ref) is ref and zoo.ModelRef.of(text) == ref
    assert zoo.ModelRef.parse(str(ref)) == ref
    assert str(zoo.ModelRef("mnist-mlp", 3)) == "mnist-mlp:3" and str(zoo.ModelRef("mnist-mlp")) == "mnist-mlp"


def test_weights_store_at_takes_a_store_a_root_or_none(weights_dir, monkeypatch):
    store = WeightsStore(weights_dir)
    assert WeightsStore.at(store) is store
    assert WeightsStore.at(str(weights_dir)).root == weights_dir
    assert WeightsStore.at(weights_dir).named_root == weights_dir
    monkeypatch.delenv("ZOO_WEIGHTS_DIR", raising=False)
    assert WeightsStore.at(None).named_root is None and WeightsStore.at(None).released is not None


# --- the manifest reader (zoo/store/manifest.py): each check below is one that a mutant of it survived without ---

def _manifest(tmp_path, data) -> "os.PathLike[str]":
    path = tmp_path / "manifest.json"
    path.write_bytes(data if isinstance(data, bytes) else json.dumps(data).encode())
    return path


GOOD = {"model": "m", "version": 1, "weights": {"file": "model.safetensors", "sha256": "0" * 64},
        "recipe": {"name": "exact", "params": {}}}


def test_a_manifest_that_is_not_utf8_is_an_integrity_error(tmp_path):
    from zoo.store.manifest import read_manifest

    with pytest.raises(zoo.IntegrityError, match="is not a UTF-8 JSON file"):
        read_manifest(_manifest(tmp_path, b'{"model": "\xff\xfe"}'))


@pytest.mark.parametrize(("key", "inner", "missing"), [("weights", {"file": "model.safetensors"}, "sha256"),
                                                       ("weights", {}, "file"),
                                                       ("recipe", {"params": {}}, "name"),
                                                       ("recipe", {}, "name")])
def test_a_nested_record_without_a_key_names_the_first_key_missing(tmp_path, key, inner, missing):
    from zoo.store.manifest import read_manifest

    assert read_manifest(_manifest(tmp_path, GOOD))["version"] == 1
    with pytest.raises(zoo.IntegrityError, match=f"'{key}' has no '{missing}' key"):
        read_manifest(_manifest(tmp_path, {**GOOD, key: inner}))


@pytest.mark.parametrize("name", ["a/b", "a\\b", "a\0b", "..", ".", "", "/abs"])
def test_each_kind_of_non_plain_file_name_is_refused_on_its_own(tmp_path, name):
    from zoo.store.manifest import plain_file_name

    assert plain_file_name(tmp_path / "manifest.json", "weights.file", "model.safetensors") == "model.safetensors"
    with pytest.raises(zoo.IntegrityError, match="must be a plain file name"):
        plain_file_name(tmp_path / "manifest.json", "weights.file", name)


def test_a_written_manifest_is_indented_json_in_its_keys_order(tmp_path):
    """People read manifests: two-space indents, keys as the trainer wrote them (not sorted)."""
    from zoo.store.manifest import write_manifest

    path = tmp_path / "manifest.json"
    manifest = {"version": 1, "model": "m", "weights": GOOD["weights"]}
    write_manifest(path, manifest)  # type: ignore[arg-type]
    text = path.read_text()
    assert text == json.dumps(manifest, indent=2) + "\n"
    assert text.index('"version"') < text.index('"model"')


def test_sampled_steps_keep_every_step_or_evenly_spaced_ones_and_the_last():
    from zoo.store.manifest import sampled_steps

    assert sampled_steps(0) == [] and sampled_steps(5) == [0, 1, 2, 3, 4] and sampled_steps(100) == list(range(100))
    steps = sampled_steps(250)
    assert len(steps) == 101 and steps[:4] == [0, 2, 5, 7] and steps[-2:] == [247, 249]
    assert steps == sorted(set(steps))
    assert sampled_steps(10, points=4) == [0, 2, 5, 7, 9]
