"""`zoo serve` as operators run it: new versions without a restart, metrics across workers, slow clients,
a killed worker, memory under a soak, access logs. Real processes on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import serving
from serving import call, start_server, stop_server

import zoo

pytestmark = pytest.mark.slow
served_weights = serving.served_weights


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


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class Load:
    """Client threads sending one request over and over until stopped, keeping every status (or error) and
    the monotonic time it came back."""

    def __init__(self, url: str, path: str, body: bytes, threads: int = 4) -> None:
        self.outcomes: list[tuple[float, object]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(url + path, body), daemon=True) for _ in range(threads)
        ]

    def _run(self, url: str, body: bytes) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    response.read()
                    outcome: object = response.status
            except urllib.error.HTTPError as error:
                outcome = error.code
            except OSError as error:
                outcome = repr(error)
            # One append of a pair keeps each outcome with its time across threads.
            self.outcomes.append((time.monotonic(), outcome))

    @property
    def results(self) -> list[object]:
        return [outcome for _, outcome in self.outcomes]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)


def served_versions(url: str, name: str, field=lambda version: version["version"]) -> list:
    return [field(v) for v in call(url, f"/v1/models/{name}")[1]["versions"]]


def wait_for(
    url: str, name: str, expected: list, field=lambda version: version["version"], timeout: float = 30
) -> float:
    """Seconds until every worker serves `expected` versions (or `field` of them): six answers in a row agree."""
    started, agreeing = time.monotonic(), 0
    while time.monotonic() - started < timeout:
        agreeing = agreeing + 1 if served_versions(url, name, field) == expected else 0
        if agreeing >= 6:
            return time.monotonic() - started
        time.sleep(0.1)
    raise AssertionError(f"{name}: {served_versions(url, name, field)} after {timeout} s, expected {expected}")


def test_new_and_removed_versions_are_served_without_a_restart_and_no_request_fails(root, tmp_path):
    process, url = start_server(root, tmp_path, "--poll-seconds", "1")
    try:
        with Load(url, "/v1/models/linear-regression/predict", b'{"x": 1}') as load:
            zoo.train("linear-regression", overrides={"epochs": 20}, weights_dir=str(root))
            zoo.export("linear-regression:3", weights_dir=str(root))
            appeared = wait_for(url, "linear-regression", [1, 2, 3])
            # The poll may have found version 3 before its export (served on torch), then reopens it on onnx.
            wait_for(url, "linear-regression", ["onnx"] * 3, lambda v: v["backend"])
            status, answer = call(url, "/v1/models/linear-regression/versions/3/predict", b'{"x": 10}')
            assert status == 200 and answer["version"] == 3 and answer["backend"] == "onnx"
            shutil.rmtree(root / "linear-regression" / "1")
            wait_for(url, "linear-regression", [2, 3])
            assert call(url, "/v2/health/ready")[0] == 200
        assert call(url, "/v1/models/linear-regression/versions/1/predict", b'{"x": 1}')[0] == 404
    finally:
        log = stop_server(process)
    assert appeared <= 30
    assert len(load.results) > 50 and set(load.results) == {200}, [r for r in load.results if r != 200][:5]
    assert "Traceback" not in log, log


def test_metrics_add_up_every_worker(root, tmp_path):
    from prometheus_client.parser import text_string_to_metric_families

    process, url = start_server(root, tmp_path, "--workers", "2")
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda _: call(
                        url, "/v1/models/lenet/versions/1/predict", json.dumps({"pixels": [0] * 783 + [255]}).encode()
                    )[0],
                    range(60),
                )
            )
        assert statuses == [200] * 60
        with urllib.request.urlopen(url + "/metrics") as response:
            families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    finally:
        stop_server(process)
    served = sum(
        s.value
        for s in families["zoo_requests"].samples
        if s.name == "zoo_requests_total"
        and s.labels
        == {"model": "lenet", "version": "1", "status": "200", "route": "/v1/models/<name>/versions/<version>/predict"}
    )
    assert served == 60
    latency = [
        s
        for s in families["zoo_request_duration_seconds"].samples
        if s.name == "zoo_request_duration_seconds_count" and s.labels["model"] == "lenet"
    ]
    assert sum(s.value for s in latency) >= 60
    inference = [
        s
        for s in families["zoo_inference_duration_seconds"].samples
        if s.name == "zoo_inference_duration_seconds_count" and s.labels.get("backend") == "onnx"
    ]
    assert sum(s.value for s in inference) == 60
    assert {s.labels["model"]: s.value for s in families["zoo_models_loaded"].samples} == {
        "lenet": 1,
        "linear-regression": 2,
    }


@pytest.mark.parametrize("threads", ["1", "2"])  # requests run on the event loop itself, or on a pool
def test_slow_clients_do_not_block_anyone(root, tmp_path, threads):
    process, url = start_server(root, tmp_path, "--threads", threads)
    host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
    trickling = []
    try:
        for index in range(50):
            sock = socket.create_connection((host, port), timeout=10)
            if index % 2:  # half their headers
                sock.sendall(b"POST /v1/models/linear-regression/predict HTTP/1.1\r\nHost: x\r\nContent-Ty")
            else:  # all headers, part of the body
                sock.sendall(
                    b"POST /v1/models/linear-regression/predict HTTP/1.1\r\nHost: x\r\n"
                    b'Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{"x": '
                )
            trickling.append(sock)
        times = []
        for _ in range(5):
            started = time.perf_counter()
            status, answer = call(url, "/v1/models/linear-regression/predict", b'{"x": 10}')
            times.append(time.perf_counter() - started)
            assert status == 200 and abs(answer["y"] - 35) < 1
        assert min(times) < 0.1, times
    finally:
        for sock in trickling:
            sock.close()
        stop_server(process)


def gone(pid: int) -> bool:
    """Whether a worker has been reaped by granian (a zombie thread-group leader may still have threads running)."""
    return not Path(f"/proc/{pid}").exists()


def test_a_killed_worker_costs_only_its_requests_in_flight_and_is_replaced(root, tmp_path):
    process, url = start_server(root, tmp_path, "--workers", "2")
    try:
        workers = children(process.pid)
        assert len(workers) == 2
        with Load(url, "/v1/models/linear-regression/predict", b'{"x": 1}', threads=4) as load:
            time.sleep(1)
            killed_at = time.monotonic()
            os.kill(workers[0], signal.SIGKILL)
            deadline = killed_at + 30
            while time.monotonic() < deadline and not gone(workers[0]):
                time.sleep(0.01)
            gone_at = time.monotonic()
            while time.monotonic() < deadline and len(set(children(process.pid)) - {workers[0]}) < 2:
                time.sleep(0.2)
            time.sleep(1)
        replaced = set(children(process.pid))
        assert len(replaced) == 2 and workers[0] not in replaced
        assert call(url, "/v2/health/ready")[0] == 200
    finally:
        stop_server(process)
    # Each worker listens on its own SO_REUSEPORT socket, so what the dead one loses is what it had accepted
    # and what the kernel had queued on its socket until that socket closed with the process (a client that
    # reconnects at once may land in that queue again). Nothing else fails: no 5xx, nothing after it is gone.
    failures = [(at, outcome) for at, outcome in load.outcomes if outcome != 200]
    assert all(isinstance(outcome, str) and "connection" in outcome.lower() for _, outcome in failures), failures
    assert all(killed_at <= at <= gone_at + 0.5 for at, _ in failures), (killed_at, gone_at, failures)
    assert sum(1 for at, outcome in load.outcomes if at > gone_at + 0.5 and outcome == 200) > 20
    assert len(load.results) > 50


def test_a_soak_at_full_load_keeps_every_workers_memory(root, tmp_path):
    process, url = start_server(root, tmp_path, "--workers", "2")
    try:
        workers = children(process.pid)
        body = json.dumps({"pixels": [[0] * 783 + [255]] * 8}).encode()
        with Load(url, "/v1/models/lenet/predict", body, threads=4):
            time.sleep(10)  # warm: allocators and caches reach their working size
            start = {pid: rss_kib(pid) for pid in workers}
            time.sleep(60)
            end = {pid: rss_kib(pid) for pid in workers}
    finally:
        stop_server(process)
    for pid in workers:
        assert end[pid] <= 1.10 * start[pid], (pid, start[pid], end[pid])


def test_access_log_has_one_json_line_per_request(root, tmp_path):
    process, url = start_server(root, tmp_path, "--access-log", "json")
    try:
        for x in range(5):
            assert call(url, "/v1/models/linear-regression/predict", json.dumps({"x": x}).encode())[0] == 200
        assert call(url, "/v1/models/nope/predict", b'{"x": 1}')[0] == 404
    finally:
        log = stop_server(process)
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    predictions = [line for line in lines if line["path"] == "/v1/models/linear-regression/predict"]
    assert len(predictions) == 5 and all(line["status"] == 200 and line["latency_ms"] > 0 for line in predictions)
    assert {line["version"] for line in predictions} == {"2"}
    assert any(line["status"] == 404 and line["path"] == "/v1/models/nope/predict" for line in lines)
