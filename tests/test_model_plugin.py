"""A model written the way a contributor would, in one file outside the zoo, driven through train -> export -> serve."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from serving import ZOO, call, mnist_digits, start_server, stop_server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent

# The README's own example of a model file, exactly as a contributor would copy it.
PLANE = (REPO / "README.md").read_text().split("## Adding a model", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory, data_dir) -> tuple[dict[str, str], Path]:
    """Two plugin modules (a new values model, and mnist_mlp.py copied and renamed), trained and exported."""
    folder = tmp_path_factory.mktemp("plugins")
    (folder / "plane_model.py").write_text(PLANE)
    copied = (REPO / "zoo" / "models" / "mnist_mlp.py").read_text()
    (folder / "my_mlp.py").write_text(
        copied.replace('name="mnist-mlp"', 'name="my-mlp"').replace("def mnist_mlp()", "def my_mlp()")
    )
    weights = tmp_path_factory.mktemp("plugin-weights")
    env = {
        **os.environ,
        "PYTHONPATH": str(folder),
        "ZOO_MODEL_MODULES": "plane_model, my_mlp",
        "ZOO_WEIGHTS_DIR": str(weights),
        "ZOO_DATA_DIR": str(data_dir),
    }
    for args in (
        ["train", "plane"],
        ["train", "my-mlp", "--epochs", "1"],
        ["export", "plane", "-f", "all"],
        ["export", "my-mlp"],
    ):
        result = subprocess.run(
            [str(ZOO), *args], env=env, cwd=folder, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return env, weights


def test_the_plugin_is_listed_trained_exported_and_evaluated_on_its_own_outputs(plugin):
    env, weights = plugin
    listing = json.loads(
        subprocess.run(
            [str(ZOO), "list", "--json"], env=env, capture_output=True, text=True, timeout=120, check=True
        ).stdout
    )
    rows = {row["name"]: row for row in listing}
    assert rows["plane"]["form"] == "values" and rows["my-mlp"]["form"] == "digits"
    assert rows["plane"]["versions"][0]["artifacts"] == ["onnx", "pt2", "torchscript"]
    manifest = json.loads((weights / "plane" / "1" / "manifest.json").read_text())
    assert all(entry["verification"]["passed"] for entry in manifest["artifacts"].values())
    assert manifest["metrics"]["test_mse"] < 0.01
    report = json.loads(
        subprocess.run(
            [str(ZOO), "evaluate", "plane", "--backend", "onnx", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    )
    assert report["metrics"]["test_mse"] == pytest.approx(manifest["metrics"]["test_mse"], abs=1e-4)


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_zoo_serve_serves_the_plugins_on_v1_v2_and_openapi(plugin, tmp_path, data_dir, backend):
    env, weights = plugin
    process, url = start_server(weights, tmp_path, "--backend", backend, env=env)
    try:
        status, models = call(url, "/v1/models")
        assert status == 200
        forms = {m["name"]: m["form"] for m in models["models"]}
        assert forms == {"my-mlp": "digits", "plane": "values"}
        status, answer = call(url, "/v1/models/plane/predict", b'{"x": [[1, 1, 1], [0, 0, 0]]}')
        assert status == 200 and answer["backend"] == backend
        np.testing.assert_allclose(answer["y"], [6.0, 4.0], atol=0.1)
        status, answer = call(url, "/v1/models/plane/predict", b'{"x": [1, 2]}')
        assert status == 400 and "list of 3 numbers" in answer["error"]
        body = {"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 1, 1]}]}
        status, answer = call(url, "/v2/models/plane/infer", json.dumps(body).encode())
        assert status == 200 and abs(answer["outputs"][0]["data"][0] - 6.0) < 0.1
        digits, labels = mnist_digits(data_dir, 20)
        status, answer = call(url, "/v1/models/my-mlp/predict", json.dumps({"pixels": digits.tolist()}).encode())
        assert status == 200 and (np.array([p["digit"] for p in answer["predictions"]]) == labels).mean() >= 0.8
        status, document = call(url, "/openapi.json")
        assert {"/v1/models/plane/predict", "/v1/models/my-mlp/predict", "/v2/models/plane/infer"} <= set(
            document["paths"]
        )
        body = document["paths"]["/v1/models/plane/predict"]["post"]["requestBody"]["content"]["application/json"]
        assert body["schema"]["required"] == ["x"] and "[3 numbers]" in body["schema"]["description"]
        assert (
            "pixels"
            in document["paths"]["/v1/models/my-mlp/predict"]["post"]["requestBody"]["content"]["application/json"][
                "schema"
            ]["properties"]
        )
    finally:
        log = stop_server(process)
    assert "Traceback" not in log, log


def test_serve_models_narrows_what_is_served(plugin, tmp_path):
    env, weights = plugin
    process, url = start_server(weights, tmp_path, "--models", "plane", env=env)
    try:
        assert [m["name"] for m in call(url, "/v1/models")[1]["models"]] == ["plane"]
    finally:
        stop_server(process)


def test_a_model_installed_under_the_zoo_models_entry_point_group_is_registered(tmp_path):
    """The README's other way in: a distribution declaring `[zoo.models]` in its entry points (no ZOO_MODEL_MODULES).
    An installed distribution is a dist-info folder on the import path, as pip leaves it."""
    (tmp_path / "plane_model.py").write_text(PLANE)
    info = tmp_path / "zoo_plane-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zoo-plane\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[zoo.models]\nplane = plane_model\n")
    env = {key: value for key, value in os.environ.items() if key != "ZOO_MODEL_MODULES"}
    env["PYTHONPATH"] = str(tmp_path)
    listed = subprocess.run([str(ZOO), "list", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False)
    assert listed.returncode == 0, listed.stderr
    assert "plane" in [row["name"] for row in json.loads(listed.stdout)]
    (info / "entry_points.txt").write_text("[console_scripts]\nplane = plane_model\n")  # another group: not a model
    listed = subprocess.run([str(ZOO), "list", "--json"], env=env, cwd=tmp_path, capture_output=True, text=True,
                            timeout=300, check=False)
    assert listed.returncode == 0 and "plane" not in [row["name"] for row in json.loads(listed.stdout)]
