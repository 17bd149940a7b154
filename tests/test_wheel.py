"""A built wheel, installed into a fresh venv, works from an empty folder with a fresh HOME."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest
from serving import call, mnist_digits, photo_of, start_process, start_server, stop_server

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parent.parent
SOURCES = ("pyproject.toml", "README.md", "zoo", "cli", "serve", "weights")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """`pip wheel` of a clean copy of the sources (the checkout is left untouched)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("dist")
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(
            REPO / name,
            source / name,
            **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}),
        )
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return next(out.glob("zoo-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory, data_dir) -> tuple[Path, dict[str, str], Path, Path]:
    """A fresh venv with only the wheel installed (its dependencies reused from the test venv), an empty
    working folder and a fresh HOME. Returns (venv bin, env, working folder, home)."""
    root = tmp_path_factory.mktemp("fresh")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Dependencies come from the test venv; its .pth files (the editable zoo among them) are not read from here.
    Path(site, "_test_venv_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    home, work = root / "home", root / "empty"
    home.mkdir()
    work.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ZOO_", "XDG_", "PYTHON"))}
    env.update(HOME=str(home), ZOO_DATA_DIR=str(data_dir), PATH=f"{root / 'venv' / 'bin'}:{env['PATH']}")
    return root / "venv" / "bin", env, work, home


def run(bin_dir: Path, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(bin_dir / "zoo"), *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_the_wheel_installs_zoo_alone_with_its_weights_and_page(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {name.split("/")[0] for name in names} == {
        "zoo",
        wheel.name.split("-")[0] + "-" + wheel.name.split("-")[1] + ".dist-info",
    }
    for expected in (
        "zoo/cli/main.py",
        "zoo/serve/__init__.py",
        "zoo/serve/static/index.html",
        "zoo/serve/static/draw.js",
        "zoo/weights/mnist-mlp/1/model.safetensors",
        "zoo/weights/mnist-mlp/1/manifest.json",
        "zoo/weights/lenet/1/model.onnx",
        "zoo/weights/linear-regression/1/test_data_set_0/input_0.pb",
        "zoo/weights/mnist-mlp/1/README.md",
        "zoo/weights/mnist-mlp/1/confusion_matrix.png",
        "zoo/weights/linear-regression/1/fitted_line.png",
    ):
        assert expected in names


def test_a_fresh_install_lists_and_serves_the_released_versions(installed, data_dir):
    bin_dir, env, work, home = installed
    listing = run(bin_dir, env, work, "list", "--json")
    assert listing.returncode == 0, listing.stderr
    versions = {row["name"]: [v["version"] for v in row["versions"]] for row in json.loads(listing.stdout)}
    assert versions["mnist-mlp"] == versions["lenet"] == versions["linear-regression"] == [1]
    process, url = start_server(None, work, env=env, zoo=bin_dir / "zoo")
    try:
        with __import__("urllib.request").request.urlopen(url + "/") as page:
            assert b"<canvas" in page.read()
        digits, labels = mnist_digits(data_dir, 5)
        for digit, label in zip(digits, labels, strict=True):
            status, answer = call(url, "/v1/models/lenet/predict", photo_of(digit), "image/png")
            assert status == 200 and answer["digit"] == label and answer["version"] == 1
    finally:
        log = stop_server(process)
    assert "Traceback" not in log, log


def test_any_wsgi_server_hosts_the_installed_app_factory(installed):
    bin_dir, env, work, _ = installed
    process, url = start_process(
        [
            str(bin_dir / "python"),
            "-m",
            "granian",
            "--interface",
            "wsgi",
            "--factory",
            "--port",
            "{port}",
            "zoo.serve:create_app",
        ],
        work,
        env,
    )
    try:
        assert [m["name"] for m in call(url, "/v1/models")[1]["models"]] == ["lenet", "linear-regression", "mnist-mlp"]
    finally:
        stop_server(process)


def test_training_lands_in_the_users_folder_and_becomes_the_latest(installed):
    bin_dir, env, work, home = installed
    install = Path(
        subprocess.run(
            [str(bin_dir / "python"), "-c", "import zoo, os; print(os.path.dirname(zoo.__file__))"],
            env=env,
            cwd=work,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    before = sorted(install.rglob("*"))
    trained = run(bin_dir, env, work, "train", "linear-regression", "--json")
    assert trained.returncode == 0, trained.stderr
    assert json.loads(trained.stdout)["version"] == 2
    assert (home / ".local" / "share" / "zoo" / "weights" / "linear-regression" / "2" / "manifest.json").is_file()
    assert sorted(p for p in install.rglob("*") if "__pycache__" not in p.parts) == [
        p for p in before if "__pycache__" not in p.parts
    ]
    assert not list(work.iterdir())
    info = json.loads(run(bin_dir, env, work, "info", "linear-regression", "--json").stdout)
    assert [v["version"] for v in info["versions"]] == [1, 2]
    assert json.loads(run(bin_dir, env, work, "evaluate", "linear-regression:1", "--json").stdout)["version"] == 1
    assert json.loads(run(bin_dir, env, work, "evaluate", "linear-regression", "--json").stdout)["version"] == 2
    assert run(bin_dir, env, work, "export", "linear-regression").returncode == 0
    refused = run(bin_dir, env, work, "export", "linear-regression:1")
    assert refused.returncode == 2 and "released version, read-only" in refused.stderr


def test_torch_hub_loads_the_released_mnist_mlp_at_its_accuracy(installed, data_dir):
    bin_dir, env, work, _ = installed
    code = f"""
import torch
from zoo.core.data import mnist_test_images
model = torch.hub.load({str(REPO)!r}, "mnist_mlp", source="local", weights="DEFAULT")
x, y = mnist_test_images({str(data_dir)!r}, 10000)
with torch.no_grad():
    print((model(x).argmax(1) == y).float().mean().item(), model.training)
"""
    result = subprocess.run(
        [str(bin_dir / "python"), "-c", code],
        env=env,
        cwd=work,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    accuracy, training = result.stdout.split()
    assert float(accuracy) >= 0.97 and training == "False"
