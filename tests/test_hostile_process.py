"""Hostile clients and damaged folders against real `zoo serve` processes: stalled bodies, overload, large pictures,
a damaged version at start. Each costs a 408, a 503 or one left-out version; the server goes on answering."""

from __future__ import annotations

import json
import resource
import selectors
import shutil
import socket
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import serving
from serving import SERVED, call, start_server, stop_server
from test_hostile import canvas_digit

import zoo

pytestmark = pytest.mark.slow
served_weights = serving.served_weights


def open_files(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def stalled_connection(port: int, body: bytes) -> socket.socket:
    """A connection that sends a request's headers, `Content-Length: 100` and `body` (under 100 bytes), then stops."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/models/linear-regression/predict HTTP/1.1\r\nHost: zoo\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n" + body)
    return sock


def answers_until_closed(socks: list[socket.socket], seconds: float) -> list[bytes]:
    """What the server sent on each connection until it closed them all, or `seconds` passed."""
    selector = selectors.DefaultSelector()
    received = {sock: b"" for sock in socks}
    for sock in socks:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    deadline = time.monotonic() + seconds
    while selector.get_map() and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=1):
            try:
                data = key.fileobj.recv(65536)
            except ConnectionResetError:
                data = b""
            if data:
                received[key.fileobj] += data
            else:
                selector.unregister(key.fileobj)
    still_open = len(selector.get_map())
    for sock in socks:
        sock.close()
    assert still_open == 0, f"{still_open} stalled connections still held after {seconds} s"
    return list(received.values())


def test_a_thousand_stalled_bodies_cost_a_408_each_and_block_no_one(served_weights, tmp_path):
    open_files(4096)
    process, url = start_server(served_weights, tmp_path, "--workers", "1", "--body-timeout", "3",
                                "--poll-seconds", "0")
    port = int(url.rsplit(":", 1)[1])
    try:
        # Half send one byte of their body, half none at all.
        stalled = [stalled_connection(port, b"{" if i % 2 else b"") for i in range(1100)]
        started = time.monotonic()
        status, answer = call(url, "/v1/models/linear-regression/predict", json.dumps({"x": 10}).encode())
        assert status == 200 and answer["model"] == "linear-regression"
        assert time.monotonic() - started < 2, "a normal request waited behind the stalled ones"
        assert call(url, "/healthz") == (200, {"live": True})
        answers = answers_until_closed(stalled, seconds=30)
        assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), {a[:12] for a in answers}
        assert b"expected the whole body within 3 s" in answers[0]
        assert call(url, "/v1/models/linear-regression/predict", json.dumps({"x": 10}).encode())[0] == 200
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def damaged_weights(served_weights, tmp_path_factory):
    root = tmp_path_factory.mktemp("damaged-served")
    for name in SERVED:
        shutil.copytree(served_weights / name, root / name)
    shutil.copytree(root / "lenet" / "1", root / "lenet" / "2")
    manifest = json.loads((root / "lenet" / "2" / "manifest.json").read_text())
    (root / "lenet" / "2" / "manifest.json").write_text(json.dumps({**manifest, "version": 2}))
    onnx = root / "lenet" / "2" / "model.onnx"
    onnx.write_bytes(onnx.read_bytes()[:1000])
    return root


def test_a_damaged_version_at_start_is_left_out_and_the_server_runs(damaged_weights, tmp_path, data_dir):
    """Before, granian reported a crash loop and exited: the worker raised while opening lenet version 2."""
    process, url = start_server(damaged_weights, tmp_path, "--workers", "2", "--poll-seconds", "0")
    try:
        assert call(url, "/v2/health/ready")[0] == 200
        assert call(url, "/v2/models/lenet/versions/2/ready") == (
            503,
            {"name": "lenet", "version": "2", "ready": False},
        )
        assert call(url, "/v2/models/lenet/versions/1/ready")[1]["ready"] is True
        images, labels = serving.mnist_digits(data_dir, 1)
        status, answer = call(url, "/v1/models/lenet/predict", json.dumps({"pixels": images[0].tolist()}).encode())
        assert status == 200 and answer["version"] == 1 and answer["digit"] == labels[0]
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            assert 'zoo_models_failed{model="lenet"} 1.0' in response.read().decode()
    finally:
        log = stop_server(process)
    lines = [line for line in log.splitlines() if "not serving lenet:2" in line]
    assert len(lines) == 2 and "IntegrityError" in lines[0], log  # one line per worker
    assert "Traceback" not in log


def post(url: str, data: bytes, content_type: str = "image/png") -> tuple[int, Any, dict]:
    request = urllib.request.Request(url, data=data, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, error.headers, json.loads(error.read())


def test_past_the_queue_bound_a_request_gets_503_with_retry_after_and_the_rest_their_answers(served_weights, tmp_path):
    large = canvas_digit(4096, "RGBA")  # a few hundred milliseconds each, so that requests pile up
    runtime = zoo.exports.runtimes.open_runtime("mnist-mlp", "onnx", weights_dir=str(served_weights))
    process, url = start_server(served_weights, tmp_path, "--workers", "1", "--max-queue", "2", "--poll-seconds", "0")
    try:
        barrier = threading.Barrier(8)

        def one(_):
            barrier.wait()
            return post(f"{url}/v1/models/mnist-mlp/predict", large)

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(one, range(8)))
        statuses = sorted(status for status, _, _ in results)
        assert set(statuses) == {200, 503} and statuses.count(200) >= 2, statuses
        digit = int(runtime.run(zoo.inputs.imaging.image_to_batch(large)).argmax())
        for status, headers, answer in results:
            if status == 503:
                assert headers.get("Retry-After") == "1" and "its limit" in answer["error"]
            else:
                assert answer["digit"] == digit
        # The queue drained: the next request is answered.
        assert post(f"{url}/v1/models/mnist-mlp/predict", large)[0] == 200
    finally:
        stop_server(process)


def test_liveness_is_answered_while_the_heaviest_picture_is_read(served_weights, tmp_path):
    large = canvas_digit(4096, "RGBA")
    process, url = start_server(served_weights, tmp_path, "--workers", "1", "--poll-seconds", "0")
    try:
        for _ in range(3):
            heavy = ThreadPoolExecutor(1).submit(post, f"{url}/v1/models/mnist-mlp/predict", large)
            probes = []
            while not heavy.done():
                started = time.monotonic()
                for path in ("/healthz", "/v2/health/live"):
                    assert call(url, path) == (200, {"live": True})
                probes.append(time.monotonic() - started)
            assert heavy.result()[0] == 200
            assert len(probes) >= 2, "no liveness answer came while the picture was read"
            assert max(probes) < 0.5, f"liveness waited {max(probes):.2f} s behind a picture"
    finally:
        stop_server(process)
