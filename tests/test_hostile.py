"""Requests and folders made by someone who means harm: each costs a 4xx (or one left-out version), never the server.

Through Flask's test client; tests/test_hostile_process.py does the same against real `zoo serve` processes.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import serving
from conftest import encoded
from PIL import Image, ImageDraw

import zoo
from zoo.cards.card import StoredCard
from zoo.cli.main import FLAGS
from zoo.core.errors import InvalidSettingError
from zoo.serve import create_app
from zoo.serve.cards import card_html, safe_url
from zoo.serve.errors import public
from zoo.serve.repository import VersionPolicy, version_number

served_weights = serving.served_weights


@pytest.fixture(scope="module")
def app(served_weights):
    return create_app({"WEIGHTS_DIR": str(served_weights), "MAX_BATCH": 64})


@pytest.fixture
def client(app):
    return app.test_client()


def v2(data=None, **tensor) -> dict:
    """A valid one-image mnist-mlp v2 request, with `tensor`'s fields replacing the input's."""
    return {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32",
                        "data": [0.0] * 784 if data is None else data, **tensor}]}


# --- 1. bounded metrics


def test_requests_for_made_up_models_do_not_grow_metrics(client):
    def flood(count: int) -> None:
        for i in range(count):
            name = f"{i:03d}" + "x" * 200
            assert client.get(f"/v2/models/{name}").status_code == 404
            assert client.post(f"/v1/models/{name}/predict", json={"x": 1}).status_code == 404
        client.get("/v2/models/" + "y" * 60_000)

    client.get("/metrics")
    flood(1)  # the series of these routes' 404s exist before the flood: one per route and status, not per name
    before = client.get("/metrics").data
    flood(300)
    after = client.get("/metrics").data
    assert b"xxxxxxxx" not in after and b"yyyyyyyy" not in after
    assert b'model="unserved"' in after
    # Only counts change (a few more digits); no new series.
    assert len(after) - len(before) < 200, (len(before), len(after))



# --- 7. type-confused, degenerate and non-ASCII fields


TYPE_CONFUSED = {
    "request parameters a list": {**v2(), "parameters": [1, 2]},
    "request parameters a string": {**v2(), "parameters": "binary"},
    "input parameters a list": v2(parameters=["binary_data_size"]),
    "input parameters a string": v2(parameters="x"),
    "output parameters a list": {**v2(), "outputs": [{"name": "logits", "parameters": [True]}]},
    "output parameters a string": {**v2(), "outputs": [{"name": "logits", "parameters": "binary"}]},
    "outputs an object": {**v2(), "outputs": {"name": "logits"}},
    "outputs with an unknown key": {**v2(), "outputs": [{"name": "logits", "shape": [1]}]},
    "binary_data a string": {**v2(), "outputs": [{"name": "logits", "parameters": {"binary_data": "yes"}}]},
    "binary_data_output a number": {**v2(), "parameters": {"binary_data_output": 1}},
    "binary_data_size a string": v2(parameters={"binary_data_size": "3136"}),
    "binary_data_size a boolean": v2(parameters={"binary_data_size": True}),
    "id a number": {**v2(), "id": 7},
    "id an object": {**v2(), "id": {"a": 1}},
    "name an object": v2(name={"image": 1}),
    "datatype a list": v2(datatype=["FP32"]),
    "shape a string": v2(shape="1,1,28,28"),
    "shape with booleans": v2(shape=[True, 1, 28, 28]),
    "shape with floats": v2(shape=[1.0, 1, 28, 28]),
    "shape of 9 dimensions": v2(shape=[1] * 9),
    "shape whose product wraps to 0 in int64": v2(shape=[2**32, 2**32, 1, 1]),
    "enormous shape": v2(shape=[10**30, 1, 28, 28]),
    "zero-size shape": v2(data=[], shape=[0, 1, 28, 28]),
    "shape of no dimensions, one value": v2(data=[0.5], shape=[]),
    "data of strings": v2(data=["0"] * 784),
    "inputs an object": {"inputs": {"name": "image"}},
    "request a list": [v2()],
}


@pytest.mark.parametrize("body", TYPE_CONFUSED.values(), ids=TYPE_CONFUSED.keys())
def test_type_confused_v2_requests_are_400s_with_a_message(client, body):
    response = client.post("/v2/models/mnist-mlp/infer", json=body)
    assert response.status_code == 400, response.get_json()
    assert "expected" in response.get_json()["error"]


def test_data_nested_deeper_than_any_parser_allows_is_a_400(client):
    body = json.dumps(v2(data=[])).replace("[]", "[" * 100_000 + "]" * 100_000)
    response = client.post("/v2/models/mnist-mlp/infer", data=body, content_type="application/json")
    assert response.status_code == 400 and "expected" in response.get_json()["error"]


@pytest.mark.parametrize("length", ["²", "١٢", "1" * 5000, "-1", " 12", "0x10", ""])
def test_header_lengths_must_be_ascii_digits(client, length):
    body = json.dumps(v2()).encode()
    response = client.post("/v2/models/mnist-mlp/infer", data=body, content_type="application/octet-stream",
                           headers={"Inference-Header-Content-Length": length})
    assert response.status_code == 400
    assert "Inference-Header-Content-Length must be a byte count" in response.get_json()["error"]


@pytest.mark.parametrize("version", ["١", "²", "1" * 5000, "01", "1.0", "+1"])
def test_versions_must_be_ascii_digits_without_leading_zeros(client, version):
    """A version in Arabic-Indic digits was once served as version 1."""
    one = {"inputs": [{"name": "x", "shape": [1, 1], "datatype": "FP32", "data": [1]}]}
    assert client.post(f"/v2/models/linear-regression/versions/{version}/infer", json=one).status_code == 404
    assert client.get(f"/v2/models/linear-regression/versions/{version}/ready").status_code == 404
    assert client.get(f"/models/linear-regression/versions/{version}").status_code == 404
    assert version_number(version) is None


@pytest.mark.parametrize("text", ["latest:²", "latest:١", "²", "1,²", "latest:" + "9" * 5000, "latest:0"])
def test_version_policies_must_be_ascii_digits(text):
    with pytest.raises(InvalidSettingError, match="^versions expects") as raised:
        VersionPolicy.parse(text)
    assert raised.value.spelled(FLAGS).startswith("--versions expects")


def test_ascii_version_numbers_still_work(client):
    assert version_number("12") == 12
    assert VersionPolicy.parse("latest:2").latest == 2 and VersionPolicy.parse("1, 3").specific == (1, 3)
    assert client.get("/v2/models/linear-regression/versions/2/ready").get_json()["ready"] is True


# --- 8. quiet answers, honest logs


def test_answers_name_no_server_path_or_hash(client, served_weights):
    answers = [
        client.get("/models/mnist-mlp/versions/99"),
        client.get("/models/two-layer-net"),
        client.get("/v2/models/mnist-mlp/versions/99"),
    ]
    for response in answers:
        assert response.status_code == 404
        text = response.get_data(as_text=True)
        assert str(served_weights) not in text and str(zoo.store.versions.RELEASED_WEIGHTS) not in text, text


def test_public_messages_keep_routes_and_drop_paths_and_hashes():
    digest = "ab" * 32
    assert (
        public(f"/srv/weights/a/1/model.onnx does not match: expected sha256 {digest}")
        == "<server path> does not match: expected sha256 <sha256>"
    )
    assert (
        public("call /v1/models/mnist-mlp/predict or /models/lenet/versions/1")
        == "call /v1/models/mnist-mlp/predict or /models/lenet/versions/1"
    )


def test_the_text_access_log_cannot_be_forged(served_weights, caplog):
    app = create_app({"WEIGHTS_DIR": str(served_weights), "ACCESS_LOG": "text"})
    with caplog.at_level(logging.INFO, logger="zoo.access"):
        app.test_client().get('/v1/models/x%0A127.0.0.1 "GET /v1/models" 200 5 0.1ms%1b[2J')
    lines = [record.getMessage() for record in caplog.records if record.name == "zoo.access"]
    assert len(lines) == 1 and "\n" not in lines[0] and "\x1b" not in lines[0]
    assert "/v1/models/x\\x0a127.0.0.1 \\x22GET" in lines[0]


# --- 9. card pages


def test_pages_send_a_content_security_policy_and_nosniff(client):
    for path in ("/", "/models/mnist-mlp"):
        response = client.get(path)
        assert response.status_code == 200 and response.mimetype == "text/html"
        assert "script-src 'self'" in response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/v1/models").headers["X-Content-Type-Options"] == "nosniff"


def test_card_links_keep_only_safe_schemes(tmp_path):
    markdown = (
        "[a](javascript:alert(1)) [b](JaVaScRiPt:alert(2)) [c](java\tscript:alert(3)) [d](data:text/html,x) "
        "[e](https://example.org) [f](mailto:a@b.c) [g](loss.png) ![h](javascript:alert(4)) "
        "<javascript:alert(5)>"
    )
    page = card_html(StoredCard("mnist-mlp", 1, tmp_path, markdown, (), (1,)))
    assert "javascript" not in page.lower().replace("javascript:alert(5)&gt;", "")  # shown as text, never a link
    assert "data:text" not in page
    assert 'href="https://example.org"' in page and 'href="mailto:a@b.c"' in page and 'href="loss.png"' in page
    assert not safe_url(" javascript:x") and safe_url("/models/lenet") and safe_url("#top")


# --- 2. images cost what a digit needs


def canvas_digit(side: int, mode: str) -> bytes:
    """A ring drawn on transparency (as a drawing app saves it), in `mode`, as a PNG."""
    image = Image.new("RGBA", (side, side), (0, 0, 0, 0))
    ImageDraw.Draw(image).ellipse(
        (side // 4, side // 6, 3 * side // 4, 5 * side // 6), outline=(255, 255, 255, 255), width=side // 20
    )
    options = {}
    if mode == "P":
        image = image.convert("P", palette=Image.Palette.ADAPTIVE, colors=4)
        options["transparency"] = image.getpixel((0, 0))
    elif mode != "RGBA":
        image = Image.alpha_composite(Image.new("RGBA", image.size, (0, 0, 0, 255)), image).convert(mode)
    return encoded(image, **options)


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "RGB", "L", "1"])
def test_a_large_picture_is_shrunk_first_and_read_as_a_small_one(client, mode):
    """A 4096x4096 picture and the same picture at 512x512 give the model nearly the same input, so the same answer."""
    large, small = canvas_digit(4096, mode), canvas_digit(512, mode)
    batches = [zoo.inputs.imaging.image_to_batch(data) for data in (large, small)]
    assert np.abs(batches[0] - batches[1]).max() < 0.15
    answers = [
        client.post("/v1/models/mnist-mlp/predict", data=data, content_type="image/png").get_json()
        for data in (large, small)
    ]
    assert answers[0]["digit"] == answers[1]["digit"]


MEASURE = """
import resource, sys
from zoo.inputs.imaging import image_to_batch
data = sys.stdin.buffer.read()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image_to_batch(data)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.parametrize("mode", ["P", "RGBA"])
def test_a_small_file_of_a_large_picture_costs_bounded_memory(mode):
    """The issue's 30 KB palette PNG of 4096x4096 with transparency raised a worker's peak memory by 527 MB."""
    data = canvas_digit(4096, mode)
    assert len(data) < 100_000
    grown = subprocess.run([sys.executable, "-c", MEASURE], input=data, capture_output=True, check=True).stdout
    assert int(grown) < 300 * 1024, f"peak memory grew by {int(grown) // 1024} MB"  # ru_maxrss is in KB


def test_a_phone_photo_of_a_digit_is_still_accepted(client):
    photo = Image.new("RGB", (4032, 3024), "white")
    ImageDraw.Draw(photo).line((2016, 600, 2016, 2400), fill="black", width=220)  # a 1
    response = client.post("/v1/models/mnist-mlp/predict", data=encoded(photo, "JPEG", quality=85),
                           content_type="image/jpeg")
    assert response.status_code == 200 and response.get_json()["digit"] == 1


# --- 5. a damaged version is left out, not fatal


@pytest.fixture(scope="module")
def damaged_root(served_weights, tmp_path_factory) -> Path:
    """The served root with lenet version 2 (a truncated model.onnx) and 3 (a manifest that is not JSON)."""
    root = tmp_path_factory.mktemp("damaged")
    for name in serving.SERVED:
        shutil.copytree(served_weights / name, root / name)
    for version in (2, 3):
        shutil.copytree(root / "lenet" / "1", root / "lenet" / str(version))
        manifest = json.loads((root / "lenet" / str(version) / "manifest.json").read_text())
        (root / "lenet" / str(version) / "manifest.json").write_text(json.dumps({**manifest, "version": version}))
    onnx = root / "lenet" / "2" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[: onnx.stat().st_size // 2])
    (root / "lenet" / "3" / "manifest.json").write_text('{"model": "lenet", "version": 3, ')
    return root


def test_damaged_versions_are_left_out_at_start_with_one_log_line_each(damaged_root, caplog):
    with caplog.at_level(logging.ERROR, logger="zoo.serve"):
        app = create_app({"WEIGHTS_DIR": str(damaged_root)})
    client = app.test_client()
    assert client.get("/v2/health/ready").status_code == 200
    assert list(app.extensions["zoo.models"].versions("lenet")) == [1]
    failures = [record.getMessage() for record in caplog.records if "not serving lenet" in record.getMessage()]
    assert len(failures) == 2 and "lenet:2" in failures[0] and "lenet:3" in failures[1]
    for version in (2, 3):
        response = client.get(f"/v2/models/lenet/versions/{version}/ready")
        assert response.status_code == 503 and response.get_json() == {
            "name": "lenet",
            "version": str(version),
            "ready": False,
        }
        assert "failed to open" in client.get(f"/v2/models/lenet/versions/{version}").get_json()["error"]
    assert client.get("/v2/models/lenet/versions/1/ready").get_json()["ready"] is True
    assert client.post("/v1/models/lenet/predict", json={"pixels": [[0] * 28] * 28}).get_json()["version"] == 1
    metrics = client.get("/metrics").get_data(as_text=True)
    assert 'zoo_models_failed{model="lenet"} 2.0' in metrics


def test_a_version_fixed_on_disk_is_served_at_the_next_refresh(damaged_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(damaged_root, root)
    served = create_app({"WEIGHTS_DIR": str(root)}).extensions["zoo.models"]
    shutil.copy(root / "lenet" / "1" / "model.onnx", root / "lenet" / "2" / "model.onnx")
    assert served.refresh() == (["lenet:2"], [])
    assert (("lenet", 2)) not in served.failed and ("lenet", 3) in served.failed


def test_a_server_whose_every_version_is_damaged_is_live_but_not_ready(damaged_root, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(damaged_root / "lenet", root / "lenet")
    shutil.rmtree(root / "lenet" / "1")
    client = create_app({"WEIGHTS_DIR": str(root)}).test_client()
    assert client.get("/v2/health/live").status_code == 200
    assert client.get("/v2/health/ready").status_code == 503


def test_a_reference_with_thousands_of_digits_is_a_caller_error_not_a_crash():
    """int() of more than 4,300 digits raises ValueError; a reference that long once gave a traceback."""
    with pytest.raises(zoo.UnknownVersionError, match="malformed version"):
        zoo.parse_ref("mnist-mlp:" + "9" * 5000)
