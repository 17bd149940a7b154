"""Fixtures and helpers shared by the serve tests: a weights root the server can run on every backend."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import cached, encoded
from PIL import Image

import zoo
from zoo.core.data import mnist_test_images

ZOO = Path(sys.executable).with_name("zoo")
SERVED = ("lenet", "linear-regression", "mnist-mlp")  # the order a server lists them: the registry's


@pytest.fixture(scope="session")
def served_weights(trained_weights, tmp_path_factory, data_dir) -> Path:
    """A copy of the trained root with ONNX exports of the served models and a second linear-regression version."""

    def build(root: Path) -> None:
        for name in SERVED:
            shutil.copytree(trained_weights / name, root / name)
        zoo.train("linear-regression", overrides={"seed": 7, "epochs": 50}, device="cpu", weights_dir=str(root))
        for name in SERVED:
            for version in zoo.WeightsStore(root).versions(name):
                zoo.export(f"{name}:{version}", ["onnx"], weights_dir=str(root), data_dir=str(data_dir))

    return cached(tmp_path_factory, "served-weights", build)


@pytest.fixture
def root(served_weights, tmp_path) -> Path:
    """A weights root of its own (linear-regression 1 and 2, lenet 1, exported), to change under a server."""
    root = tmp_path / "weights"
    for name in ("linear-regression", "lenet"):
        shutil.copytree(served_weights / name, root / name)
    return root


def children(pid: int) -> list[int]:
    """The server's worker processes."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


def mnist_digits(data_dir: Path, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` MNIST test digits as uint8 [count, 28, 28] and their labels."""
    images, labels = mnist_test_images(data_dir, count)
    return (images[:, 0].numpy() * 255).round().astype(np.uint8), labels.numpy()


def photo_of(digit: np.ndarray, fmt: str = "PNG", side: int = 280, colour: bool = True) -> bytes:
    """An MNIST digit as a person might send it: black ink on white paper, upscaled, off-centre, in colour."""
    ink = Image.fromarray(255 - digit).resize((side * 3 // 4, side * 3 // 4), Image.Resampling.BILINEAR)
    paper = Image.new("L", (side, side), 255)
    paper.paste(ink, (side // 5, side // 10))
    return encoded(Image.merge("RGB", (paper, paper, paper)) if colour else paper, fmt)


class ReservedPort:
    """A loopback TCP port held for one server of a test: bound (never listening) with SO_REUSEADDR and
    SO_REUSEPORT until released, so the server, which binds with them too, can take it, while the kernel hands it
    to no other bind(port 0) meanwhile: no other test's server or launcher can be given it (which a port picked,
    released, then bound by the server allowed). granian cannot report a port 0 of its own (each worker binds its
    own socket), nor can torchrun's static rendezvous hand one to a second machine."""

    def __init__(self) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]

    def release(self) -> None:
        self._socket.close()

    def __enter__(self) -> ReservedPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def start_server(weights: Path | None, cwd: Path, *args: str, env: dict[str, str] | None = None,
                 zoo: Path = ZOO) -> tuple[subprocess.Popen, str]:
    """`zoo serve` on a reserved port (on `weights`, else the default root), returned once it is ready; without
    gRPC unless `args` name a --grpc-port (its default, 8001, would clash between servers run side by side)."""
    root = ["--weights-dir", str(weights)] if weights is not None else []
    grpc = [] if "--grpc-port" in args else ["--grpc-port", "0"]
    return start_process([str(zoo), "serve", "--port", "{port}", *root, *grpc, *args], cwd, env)


def start_process(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[subprocess.Popen, str]:
    """A server process ("{port}" and "{grpc_port}" in `command` become reserved ports, held until the server
    stops), returned once /v2/health/ready answers 200."""
    ports = {name: ReservedPort() for name in ("{port}", "{grpc_port}") if name in command}
    port = ports["{port}"]
    # A session of its own, so that stop_server can kill the workers with the main process: a worker left without
    # its parent would hold the output pipe open and hang communicate().
    process = subprocess.Popen([str(ports[part].port) if part in ports else part for part in command], cwd=cwd,
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    _RESERVED[process.pid] = list(ports.values())
    url = f"http://127.0.0.1:{port.port}"
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if process.poll() is not None:
            release(process)
            raise AssertionError(f"{command[0]} exited with {process.returncode}:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return process, url
        except OSError:
            time.sleep(0.2)  # polling readiness: the server says nothing else when it is ready
    raise AssertionError(f"{command[0]} not ready after 90 s:\n{stop_server(process)}")


_RESERVED: dict[int, list[ReservedPort]] = {}  # server pid -> the ports it was started on, released when it stops


def release(process: subprocess.Popen) -> None:
    for port in _RESERVED.pop(process.pid, []):
        port.release()


def stop_server(process: subprocess.Popen) -> str:
    """Stop a server started by start_process (SIGTERM, then SIGKILL to its whole session) and return its output."""
    process.terminate()
    try:
        return process.communicate(timeout=15)[0]
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        return process.communicate(timeout=15)[0]
    finally:
        release(process)


def call(url: str, path: str, body: bytes | None = None, content_type: str = "application/json"):
    """(status, JSON answer) of a request; 4xx and 5xx answers are returned, not raised."""
    request = urllib.request.Request(url + path, data=body, headers={"Content-Type": content_type} if body else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """An HTTP/1.1 response's head and whole body, however many segments they come in.

    The body ends at Content-Length, or when the server closes the connection if the head gives none.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before the end of the response head: {data!r}")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")[1:]
    lengths = [line.split(b":", 1)[1] for line in lines if line.lower().startswith(b"content-length:")]
    length = int(lengths[0]) if lengths else None
    while length is None or len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    assert length is None or len(body) >= length, f"response body cut short: {len(body)} of {length} bytes"
    return head, body
