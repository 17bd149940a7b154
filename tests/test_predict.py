"""`zoo predict` on real files: MNIST test digits saved as PNGs, arrays, JSON, stdin and numbers, in real processes.

The released versions in weights/ answer (read-only); the slow test classifies the whole 10,000-image test set
from PNG files and must score what mnist-mlp:1's manifest records.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import encoded
from serving import ZOO, mnist_digits, photo_of

import zoo
from zoo.serve import create_app

REPO = Path(__file__).resolve().parent.parent
RELEASED = REPO / "weights"


def run_predict(*args: str, stdin: bytes | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(ZOO), "predict", *map(str, args), "--weights-dir", str(RELEASED)], input=stdin,
                          capture_output=True, timeout=timeout, check=False)


def json_lines(result: subprocess.CompletedProcess) -> list[dict]:
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def save_digits(folder: Path, digits: np.ndarray, per_folder: int = 1000) -> list[Path]:
    """Each digit as folder/<i // per_folder>/<i>.png, so finding them means walking nested folders."""
    paths = []
    for i, digit in enumerate(digits):
        path = folder / f"{i // per_folder:02d}" / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encoded(digit))
        paths.append(path)
    return paths


def eager_digits(name: str, digits: np.ndarray) -> np.ndarray:
    model = zoo.load_model(name, 1, weights_dir=str(RELEASED)).model
    with torch.no_grad():
        return model(torch.from_numpy(digits.astype(np.float32) / 255).unsqueeze(1)).argmax(1).numpy()


def test_a_folder_of_pngs_is_classified_as_eager_classifies_the_pixels(tmp_path, data_dir):
    digits, labels = mnist_digits(data_dir, 120)
    save_digits(tmp_path / "digits", digits, per_folder=50)
    result = run_predict("mnist-mlp:1", tmp_path / "digits", "--backend", "torch", "--json", "--top-k", 3)
    assert result.returncode == 0, result.stderr
    answers = json_lines(result)
    assert [Path(a["input"]).name for a in answers] == [f"{i:05d}.png" for i in range(120)]  # sorted, recursive
    assert [a["digit"] for a in answers] == eager_digits("mnist-mlp", digits).tolist()
    first = answers[0]
    assert first["probability"] == max(first["probabilities"]) and len(first["top_k"]) == 3
    assert first["top_k"][0] == {"digit": first["digit"], "probability": first["probability"]}
    assert np.mean(np.array([a["digit"] for a in answers]) == labels) > 0.95
    assert "predict mnist-mlp:1" not in result.stdout.decode()  # the progress bar is on stderr, never in the answers


def test_auto_answers_on_onnx_where_the_version_is_exported():
    assert zoo.predict("mnist-mlp:1", ["x.png"], weights_dir=str(RELEASED)).runtime.backend == "onnx"
    assert zoo.predict("mnist-mlp:1", ["x.png"], backend="torch", weights_dir=str(RELEASED)).runtime.backend == "torch"


def test_predict_reads_a_picture_exactly_as_the_server_does(tmp_path, data_dir):
    """A photographed digit (black on white, 280x280, colour) gives the server's probabilities to the digit."""
    digits, _ = mnist_digits(data_dir, 3)
    photos = [photo_of(digit) for digit in digits]
    for i, photo in enumerate(photos):
        (tmp_path / f"photo{i}.png").write_bytes(photo)
    cli = json_lines(run_predict("lenet:1", *(tmp_path / f"photo{i}.png" for i in range(3)), "--json"))
    client = create_app({"WEIGHTS_DIR": str(RELEASED), "MODELS": ("lenet",)}).test_client()
    for photo, answer in zip(photos, cli, strict=True):
        served = client.post("/v1/models/lenet/predict", data=photo, content_type="image/png").get_json()
        assert served["backend"] == "onnx"
        assert (answer["digit"], answer["probabilities"]) == (served["digit"], served["probabilities"])


def test_numbers_answer_a_values_model_in_the_documents_units():
    result = run_predict("linear-regression:1", 0, 10, 100, "--json")
    assert result.returncode == 0, result.stderr
    answers = json_lines(result)
    metrics = json.loads((RELEASED / "linear-regression" / "1" / "manifest.json").read_text())["metrics"]
    assert [a["input"] for a in answers] == ["0", "10", "100"]
    for x, answer in zip((0, 10, 100), answers, strict=True):
        assert answer["y"] == pytest.approx(metrics["intercept"] + metrics["slope"] * x, abs=1e-3)


def test_stdin_takes_an_image_or_numbers(data_dir):
    digits, labels = mnist_digits(data_dir, 1)
    answer = json_lines(run_predict("mnist-mlp:1", "-", "--json", stdin=encoded(digits[0])))
    assert answer[0]["input"] == "-" and answer[0]["digit"] == labels[0]
    values = json_lines(run_predict("linear-regression:1", "-", "--json", stdin=b"0 10\n100\n"))
    assert [v["input"] for v in values] == ["-[0]", "-[1]", "-[2]"] and values[2]["y"] > values[1]["y"] > values[0]["y"]


def test_npy_and_json_files_give_one_answer_per_image(tmp_path, data_dir):
    digits, labels = mnist_digits(data_dir, 5)
    np.save(tmp_path / "batch.npy", digits)
    (tmp_path / "one.json").write_text(json.dumps({"pixels": digits[0].tolist()}))
    (tmp_path / "bare.json").write_text(json.dumps((digits[1] / 255).tolist()))
    result = run_predict("mnist-mlp:1", tmp_path / "batch.npy", tmp_path / "one.json", tmp_path / "bare.json",
                         "--json", "--backend", "torch")
    assert result.returncode == 0, result.stderr
    answers = json_lines(result)
    assert [Path(a["input"]).name for a in answers] == [*(f"batch.npy[{i}]" for i in range(5)), "one.json", "bare.json"]
    eager = eager_digits("mnist-mlp", digits).tolist()
    assert [a["digit"] for a in answers] == [*eager, eager[0], eager[1]]


def test_an_unreadable_input_is_reported_on_its_own_line_and_the_rest_go_on(tmp_path, data_dir):
    digits, _ = mnist_digits(data_dir, 2)
    (tmp_path / "a.png").write_bytes(encoded(digits[0]))
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "c.png").write_bytes(encoded(digits[1]))
    result = run_predict("mnist-mlp:1", tmp_path, tmp_path / "missing.png", str(tmp_path / "nothing-*.png"), "--csv")
    assert result.returncode == 1
    rows = result.stdout.decode().splitlines()
    assert rows[0] == "input,answer,probability" and [r.split(",")[0] for r in rows[1:]] == [
        str(tmp_path / "a.png"), str(tmp_path / "c.png")]
    errors = result.stderr.decode().splitlines()
    assert len(errors) == 4, errors
    assert "broken.png: expected a PNG or JPEG image, got 19 bytes" in errors[0]
    assert "missing.png: expected a file or folder" in errors[1]
    assert "nothing-*.png: no file matches" in errors[2]
    assert "3 input(s) could not be read" in errors[3]
    lines = json_lines(run_predict("mnist-mlp:1", tmp_path / "broken.png", tmp_path / "a.png", "--json"))
    assert "error" in lines[0] and "digit" in lines[1]


def test_the_table_shows_answer_probability_and_top_k(tmp_path, data_dir):
    digits, _ = mnist_digits(data_dir, 1)
    (tmp_path / "d.png").write_bytes(encoded(digits[0]))
    result = run_predict("mnist-mlp:1", tmp_path / "d.png", "--top-k", 2)
    assert result.returncode == 0, result.stderr
    table = result.stdout.decode()
    assert "mnist-mlp version 1 (onnx)" in table and "probability" in table and "top_k" in table


@pytest.mark.parametrize("args,message", [
    (["nope:1", "x.png"], "unknown model 'nope'"),
    (["mnist-mlp:9", "x.png"], "has no version 9"),
    (["himmelblau", "1"], "cannot be exported or run on inputs"),
    (["mnist-mlp:1", "x.png", "--json", "--csv"], "expected one of --json and --csv"),
])
def test_a_wrong_model_version_or_option_is_a_one_line_caller_error(args, message):
    result = run_predict(*args)
    assert result.returncode == 2 and message in result.stderr.decode()
    assert len(result.stderr.decode().strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "auto"])
def test_the_whole_mnist_test_set_as_pngs_scores_the_manifests_accuracy(tmp_path_factory, data_dir, backend):
    """All 10,000 test digits as PNG files: the CLI's accuracy is the one mnist-mlp:1's manifest records
    (exactly on torch, which computed it; ONNX Runtime within 2 images of it)."""
    folder = tmp_path_factory.getbasetemp() / "mnist-test-pngs"
    digits, labels = mnist_digits(data_dir, 10_000)
    if not folder.is_dir():
        save_digits(folder, digits)
    result = run_predict("mnist-mlp:1", folder, "--json", "--backend", backend, timeout=900)
    assert result.returncode == 0, result.stderr
    answers = json_lines(result)
    assert len(answers) == 10_000
    correct = int((np.array([a["digit"] for a in answers]) == labels).sum())
    recorded = json.loads((RELEASED / "mnist-mlp" / "1" / "manifest.json").read_text())["metrics"]["correct"]
    assert correct == recorded if backend == "torch" else abs(correct - recorded) <= 2
