"""The README's `zoo serve` as a real process (granian workers) on loopback: HTTP clients, tritonclient,
headless Chromium."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import serving
from serving import ZOO, ReservedPort, call, mnist_digits, photo_of, read_response, start_server, stop_server

import zoo

pytestmark = pytest.mark.slow

served_weights = serving.served_weights  # the shared fixture, seen by this module's tests


@pytest.fixture(scope="module", params=["torch", "onnx"])
def server(request, served_weights, tmp_path_factory):
    process, url = start_server(served_weights, tmp_path_factory.mktemp("anywhere"), "--backend", request.param)
    yield url
    log = stop_server(process)
    assert "Traceback" not in log, log


def test_digit_and_regression_predictions(server, data_dir):
    digits, labels = mnist_digits(data_dir, 20)
    status, answer = call(server, "/v1/models/mnist-mlp/predict", json.dumps({"pixels": digits.tolist()}).encode())
    assert status == 200
    assert (np.array([p["digit"] for p in answer["predictions"]]) == labels).mean() >= 0.9
    status, answer = call(server, "/v1/models/lenet/predict", photo_of(digits[0], "JPEG"), "image/jpeg")
    assert status == 200 and answer["digit"] == labels[0] and len(answer["probabilities"]) == 10
    status, answer = call(server, "/v1/models/linear-regression/versions/1/predict", b'{"x": [0, 10]}')
    assert status == 200 and answer["version"] == 1 and abs(answer["y"][1] - 35) < 1


def test_bad_requests_get_4xx_and_the_server_keeps_answering(server):
    cases = [
        ("/v1/models/mnist-mlp/predict", b"\x89PNG\r\n\x1a\n truncated", "image/png", 400),
        ("/v1/models/mnist-mlp/predict", b"{", "application/json", 400),
        ("/v1/models/mnist-mlp/predict", b"hello", "text/plain", 415),
        ("/v1/models/nope/predict", b'{"x": 1}', "application/json", 404),
    ]
    for path, body, content_type, status in cases:
        got, answer = call(server, path, body, content_type)
        assert got == status and answer["error"], (path, got, answer)
    assert call(server, "/v2/health/ready")[0] == 200


def test_a_body_over_the_limit_is_refused_from_its_headers(server):
    """413 as soon as Content-Length says 9 MiB (the limit is 8 MiB), before the body is sent."""
    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            f"POST /v1/models/mnist-mlp/predict HTTP/1.1\r\nHost: {host}\r\nContent-Type: image/png\r\n"
            f"Content-Length: {9 << 20}\r\n\r\n".encode()
            + b"\x89PNG"
        )
        head, body = read_response(sock)
    assert head.startswith(b"HTTP/1.1 413") and b"Too Large" in body
    assert call(server, "/v2/health/ready")[0] == 200


def test_a_chunked_body_over_the_limit_is_refused_without_a_content_length(server):
    """No Content-Length to refuse from: a JSON body comes in chunks past the 8 MiB limit (valid JSON all along, so
    only its size is wrong), and is refused with 413 all the same, the server still answering."""
    host, port = server.removeprefix("http://").split(":")
    chunk = b"0," * (1 << 19)  # 1 MiB of the list's items
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /v1/models/linear-regression/predict HTTP/1.1\r\nHost: {host}\r\n"
                     "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode())
        with contextlib.suppress(OSError):  # the server may answer and close before the last chunk is sent
            for part in [b'{"x": [', *[chunk] * 9, b"0]}"]:
                sock.sendall(f"{len(part):x}\r\n".encode() + part + b"\r\n")
            sock.sendall(b"0\r\n\r\n")
        head, body = read_response(sock)
    assert head.startswith(b"HTTP/1.1 413"), (head, body)
    assert "error" in json.loads(body)
    assert call(server, "/v2/health/ready")[0] == 200


def test_many_concurrent_requests_each_get_their_own_answer(server, served_weights, data_dir):
    """50 different digits at once, 8 in flight: each answer must be the one for its own digit (a server that swapped
    answers between requests would still give fifty 200s), computed here on the backend the server says it used."""
    digits, _ = mnist_digits(data_dir, 50)
    bodies = [json.dumps({"pixels": d.tolist()}).encode() for d in digits]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: call(server, "/v1/models/lenet/predict", b), bodies))
    assert [status for status, _ in answers] == [200] * 50
    (backend,) = {answer["backend"] for _, answer in answers}
    logits = zoo.open_runtime("lenet:1", backend, weights_dir=str(served_weights)).run(
        (digits / 255.0).astype(np.float32)[:, None])
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    for (_, answer), want in zip(answers, expected, strict=True):
        assert answer["version"] == 1 and answer["digit"] == int(want.argmax())
        np.testing.assert_allclose(answer["probabilities"], want, atol=2e-6)
    assert len({tuple(answer["probabilities"]) for _, answer in answers}) == 50  # fifty different answers


def test_tritonclient_calls_the_zoo_as_it_would_call_triton(server, data_dir):
    import tritonclient.http as triton

    client = triton.InferenceServerClient(server.removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("lenet")
    metadata = client.get_model_metadata("lenet")
    assert metadata["inputs"][0]["name"] == "image" and metadata["outputs"][0]["shape"] == [-1, 10]
    digits, labels = mnist_digits(data_dir, 16)
    pixels = (digits / 255.0).astype(np.float32)[:, None]
    for binary in (True, False):
        tensor = triton.InferInput("image", list(pixels.shape), "FP32")
        tensor.set_data_from_numpy(pixels, binary_data=binary)
        outputs = [triton.InferRequestedOutput("logits", binary_data=binary)]
        result = client.infer("lenet", [tensor], outputs=None if binary else outputs, request_id="r1")
        logits = result.as_numpy("logits")
        assert logits.shape == (16, 10) and (logits.argmax(1) == labels).mean() >= 0.9
        assert result.get_response()["id"] == "r1"
    x = triton.InferInput("x", [1, 1], "FP32")
    x.set_data_from_numpy(np.array([[10.0]], np.float32))
    assert abs(float(client.infer("linear-regression", [x], model_version="1").as_numpy("y")[0, 0]) - 35) < 1
    with pytest.raises(triton.InferenceServerException, match="FP32"):
        bad = triton.InferInput("x", [1, 1], "FP64")
        bad.set_data_from_numpy(np.array([[1.0]]))
        client.infer("linear-regression", [bad])


def test_missing_onnx_exports_stop_zoo_serve_with_the_export_command(trained_weights, tmp_path):
    with ReservedPort() as reserved:
        result = subprocess.run(
            [str(ZOO), "serve", "--port", str(reserved.port), "--weights-dir", str(trained_weights),
             "--backend", "onnx"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert "zoo export mnist-mlp:1 --format onnx" in result.stderr and "Traceback" not in result.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


# Outside CI a machine without Chromium skips the browser tests; in CI a missing browser is a failure.
needs_chromium = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("CI"),
    reason="needs Debian's chromium and chromium-driver (tests/run.sh installs them)",
)


@needs_chromium
def test_a_person_draws_a_digit_and_sees_it_recognised(served_weights, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    with browsing(served_weights, tmp_path) as (browser, url):
        browser.get(url + "/")
        pad = browser.find_element(By.ID, "pad")
        wait = WebDriverWait(browser, 20)
        # The page fills the model list from /v1/models after it loads: wait for the option, not for a fixed time.
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#model option[value='lenet']"))
        Select(browser.find_element(By.ID, "model")).select_by_visible_text("lenet")
        # A vertical stroke down the middle of the pad: a "1".
        stroke = ActionChains(browser).move_to_element_with_offset(pad, 0, -90).click_and_hold()
        for _ in range(18):
            stroke = stroke.move_by_offset(0, 10)
        stroke.release().perform()
        wait.until(lambda b: b.find_element(By.ID, "digit").text.isdigit())
        bars = browser.find_elements(By.CSS_SELECTOR, "#bars li")
        assert len(bars) == 10
        assert browser.find_element(By.ID, "digit").text == "1"
        assert "lenet version 1" in browser.find_element(By.ID, "meta").text
        assert browser.find_element(By.ID, "error").text == ""
        # Each bar is drawn as wide as its probability: the fill's rendered width against its track's.
        wait.until(lambda b: all(abs(fill_share(bar) - shown_share(bar)) < 0.01 for bar in bars))
        top = browser.find_element(By.CSS_SELECTOR, "#bars li.top")
        assert fill_share(top) > 0.3 and top.find_element(By.CSS_SELECTOR, ".label").text == "1"
        assert sum(fill_share(bar) for bar in bars) == pytest.approx(1.0, abs=0.02)
        browser.save_screenshot(str(SCREENSHOTS / "drawing-page.png"))
        card_link = browser.find_element(By.CSS_SELECTOR, "#meta a")
        assert card_link.get_attribute("href") == url + "/models/lenet/versions/1"
        browser.find_element(By.ID, "clear").click()
        assert browser.find_element(By.ID, "digit").text == "?"


def fill_share(bar) -> float:
    """How much of a bar's grey track its coloured fill covers, as the browser rendered it."""
    from selenium.webdriver.common.by import By

    return (
        bar.find_element(By.CSS_SELECTOR, ".fill").rect["width"]
        / bar.find_element(By.CSS_SELECTOR, ".track").rect["width"]
    )


def shown_share(bar) -> float:
    """The probability the bar's text shows, e.g. "92.3%" -> 0.923."""
    from selenium.webdriver.common.by import By

    return float(bar.find_element(By.CSS_SELECTOR, ".pct").text.rstrip("%")) / 100


# Where the browser tests leave their screenshots, to be looked at.
SCREENSHOTS = Path(os.environ.get("ZOO_SCREENSHOTS", "/tmp"))


@contextlib.contextmanager
def browsing(weights: Path, tmp_path: Path):
    """`zoo serve` on `weights` and a headless Chromium, both stopped after; the server must log no traceback."""
    process, url = start_server(weights, tmp_path)
    browser = chromium(tmp_path)
    try:
        yield browser, url
    finally:
        browser.quit()
        log = stop_server(process)
    assert "Traceback" not in log, log


def chromium(tmp_path):
    """Headless Chromium through chromedriver, with a throwaway profile."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        f"--user-data-dir={tmp_path / 'chromium'}",
        "--window-size=900,800",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


@needs_chromium
def test_a_card_page_shows_every_figure_of_the_version(served_weights, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    with browsing(served_weights, tmp_path) as (browser, url):
        browser.get(url + "/models/lenet/versions/1")
        WebDriverWait(browser, 20).until(
            lambda b: b.execute_script("return [...document.images].every((image) => image.complete)")
        )
        images = browser.find_elements(By.TAG_NAME, "img")
        figures = zoo.WeightsStore(served_weights).manifest("lenet", 1)["card"]["figures"]
        assert sorted(image.get_attribute("src").rsplit("/", 1)[1] for image in images) == sorted(figures)
        widths = [browser.execute_script("return arguments[0].naturalWidth", image) for image in images]
        assert all(width >= 600 for width in widths), widths
        assert browser.find_element(By.TAG_NAME, "h1").text == "lenet, version 1"
        browser.save_screenshot(str(SCREENSHOTS / "card-page.png"))
        browser.execute_script("arguments[0].scrollIntoView()", images[0])
        browser.save_screenshot(str(SCREENSHOTS / "card-page-figures.png"))
        browser.find_element(By.LINK_TEXT, "draw a digit").click()
        WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.ID, "pad"))
