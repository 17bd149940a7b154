"""`zoo serve` as operators run it: new versions without a restart, metrics across workers, slow clients,
a killed worker, memory under a soak, access logs. Real processes on loopback."""

from __future__ import annotations

import contextlib
import http.client
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
from typing import Any

import numpy as np
import pytest
import serving
from serving import call, children, start_server, stop_server

import zoo

pytestmark = pytest.mark.slow
served_weights = serving.served_weights
root = serving.root


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


class Load:
    """Client threads sending one request over and over until stopped, keeping for each the monotonic times it was
    sent and came back, its status (or the error) and its JSON answer."""

    def __init__(self, url: str, path: str, body: bytes, threads: int = 4) -> None:
        self.outcomes: list[tuple[float, float, object, Any]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(url + path, body), daemon=True) for _ in range(threads)
        ]

    def _run(self, url: str, body: bytes) -> None:
        while not self._stop.is_set():
            request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
            sent, answer = time.monotonic(), None
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
                    outcome: object = response.status
            except urllib.error.HTTPError as error:
                outcome = error.code
            except OSError as error:
                outcome = repr(error)
            # One append of a tuple keeps each outcome with its time across threads.
            self.outcomes.append((sent, time.monotonic(), outcome, answer))

    @property
    def results(self) -> list[object]:
        return [outcome for _, _, outcome, _ in self.outcomes]

    def answered_since(self, moment: float) -> int:
        return sum(1 for sent, _, outcome, _ in self.outcomes if sent > moment and outcome == 200)

    def wait_for_answers(self, count: int, since: float, timeout: float = 60) -> None:
        """Until `count` requests sent after `since` were answered 200 (no fixed sleep: the answers are the event)."""
        deadline = time.monotonic() + timeout
        while self.answered_since(since) < count:
            assert time.monotonic() < deadline, f"{self.answered_since(since)} of {count} answers in {timeout} s"
            time.sleep(0.01)

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


def answering_worker(connection: http.client.HTTPConnection, workers: list[int]) -> int:
    """The worker process that accepted `connection` (after a request on it was answered): the one holding the
    server's end of it, found through /proc/net/tcp's inode of that end and the workers' open files."""
    client_port, server_port = connection.sock.getsockname()[1], connection.port
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(address.split(":")[1], 16) for address in fields[1:3])
        if local == server_port and remote == client_port:
            inodes.add(f"socket:[{fields[9]}]")
    for pid in workers:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd) in inodes:
                    return pid
    raise AssertionError(f"no worker of {workers} holds the server's end of port {client_port}'s connection")


def wait_for(
    url: str, server: int, name: str, expected: list, field=lambda version: version["version"], timeout: float = 60
) -> None:
    """Until every worker of the server (pid `server`) serves `expected` versions (or `field` of them): asked on new
    connections until each worker, identified by the connection it accepted, has answered with them once."""
    host, port = url.removeprefix("http://").split(":")
    workers, agreed, seen = children(server), set(), {}
    deadline = time.monotonic() + timeout
    while agreed != set(workers):
        assert time.monotonic() < deadline, f"{name}: workers answered {seen} after {timeout} s, expected {expected}"
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            connection.request("GET", f"/v1/models/{name}")
            answer = [field(v) for v in json.loads(connection.getresponse().read())["versions"]]
            worker = answering_worker(connection, workers)
        finally:
            connection.close()
        seen[worker] = answer
        if answer == expected:
            agreed.add(worker)
        else:
            time.sleep(0.05)  # the next poll of the store is the event; it shows only in the answers


def expected_y(root: Path, name: str, x: float) -> dict[int, float]:
    """Each stored version's y for x, computed here on PyTorch."""
    return {
        version: float(zoo.open_runtime(f"{name}:{version}", "torch", weights_dir=str(root)).run(
            np.array([[x]], np.float32))[0, 0])
        for version in zoo.WeightsStore(root).versions(name)
    }


def check_answers(load: Load, expected: dict[int, float]) -> None:
    """Every 200 of the load (x = 1) is the y of the version it names, whichever version and backend answered."""
    answers = [answer for _, _, outcome, answer in load.outcomes if outcome == 200]
    assert answers
    for answer in answers:
        assert abs(answer["y"] - expected[answer["version"]]) < 1e-4, (answer, expected)


def test_new_and_removed_versions_are_served_without_a_restart_and_no_request_fails(root, tmp_path):
    process, url = start_server(root, tmp_path, "--poll-seconds", "1")
    try:
        with Load(url, "/v1/models/linear-regression/predict", b'{"x": 1}') as load:
            zoo.train("linear-regression", overrides={"epochs": 20}, weights_dir=str(root))
            zoo.export("linear-regression:3", weights_dir=str(root))
            expected = expected_y(root, "linear-regression", 1.0)
            wait_for(url, process.pid, "linear-regression", [1, 2, 3])
            # The poll may have found version 3 before its export (served on torch), then reopens it on onnx.
            wait_for(url, process.pid, "linear-regression", ["onnx"] * 3, lambda v: v["backend"])
            status, answer = call(url, "/v1/models/linear-regression/versions/3/predict", b'{"x": 10}')
            assert status == 200 and answer["version"] == 3 and answer["backend"] == "onnx"
            shutil.rmtree(root / "linear-regression" / "1")
            wait_for(url, process.pid, "linear-regression", [2, 3])
            assert call(url, "/v2/health/ready")[0] == 200
            load.wait_for_answers(20, time.monotonic())  # answers from the version-3 workers as well
        assert call(url, "/v1/models/linear-regression/versions/1/predict", b'{"x": 1}')[0] == 404
    finally:
        log = stop_server(process)
    assert len(load.results) > 50 and set(load.results) == {200}, [r for r in load.results if r != 200][:5]
    check_answers(load, expected)
    assert {answer["version"] for *_, answer in load.outcomes} == {2, 3}  # the latest, before and after
    assert "Traceback" not in log, log


def reloads(url: str, result: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url + "/metrics") as response:
        families = {f.name: f for f in text_string_to_metric_families(response.read().decode())}
    return sum(s.value for s in families["zoo_reloads"].samples
               if s.name == "zoo_reloads_total" and s.labels["result"] == result)


def test_a_new_version_damaged_on_disk_is_left_out_at_reload_and_a_failed_reload_is_counted(root, tmp_path):
    """A truly damaged file met by the reload path: version 3 is trained and exported, then its ONNX file loses a
    byte. Every worker leaves it out (its log line, zoo_models_failed, its ready route 503) and answers from version 2
    with the right values; a repaired file is served at the next poll. Then a reload that cannot plan at all (the
    model's folder moved away) counts in zoo_reloads_total{result="failed"} and keeps what is served."""
    process, url = start_server(root, tmp_path, "--poll-seconds", "0.5")
    try:
        with Load(url, "/v1/models/linear-regression/predict", b'{"x": 1}') as load:
            elsewhere = tmp_path / "elsewhere"
            zoo.train("linear-regression", overrides={"epochs": 20}, weights_dir=str(elsewhere))
            staged = elsewhere / "linear-regression" / "1"
            zoo.export("linear-regression:1", weights_dir=str(elsewhere))
            onnx = staged / "model.onnx"
            intact = onnx.read_bytes()
            onnx.write_bytes(intact[:-1] + bytes([intact[-1] ^ 0xFF]))
            manifest = json.loads((staged / "manifest.json").read_text())
            manifest["version"] = 3
            (staged / "manifest.json").write_text(json.dumps(manifest))
            staged.rename(root / "linear-regression" / "3")  # whole, as the store publishes: damaged on arrival
            deadline = time.monotonic() + 60
            while call(url, "/v2/models/linear-regression/versions/3/ready")[0] != 503:
                assert time.monotonic() < deadline, "version 3 never reported as failed"
                time.sleep(0.05)
            wait_for(url, process.pid, "linear-regression", [1, 2])
            status, answer = call(url, "/v1/models/linear-regression/versions/3/predict", b'{"x": 1}')
            assert status == 404 and "failed to open on this server" in answer["error"]
            with urllib.request.urlopen(url + "/metrics") as response:
                assert 'zoo_models_failed{model="linear-regression"} 1.0' in response.read().decode()
            load.wait_for_answers(10, time.monotonic())
            (root / "linear-regression" / "3" / "model.onnx").write_bytes(intact)
            wait_for(url, process.pid, "linear-regression", [1, 2, 3])
            failed_before = reloads(url, "failed")
            moved = tmp_path / "moved-away"
            (root / "linear-regression").rename(moved)
            (root / "lenet").rename(tmp_path / "lenet-away")
            deadline = time.monotonic() + 60
            while reloads(url, "failed") <= failed_before:
                assert time.monotonic() < deadline, "no failed reload counted"
                time.sleep(0.05)
            assert call(url, "/v2/health/ready")[0] == 200  # still serving what it had
            moved.rename(root / "linear-regression")
            (tmp_path / "lenet-away").rename(root / "lenet")
    finally:
        log = stop_server(process)
    assert "not serving linear-regression:3 on onnx: IntegrityError" in log and "model.onnx does not match" in log
    assert set(load.results) == {200}, [r for r in load.results if r != 200][:5]
    check_answers(load, expected_y(root, "linear-regression", 1.0))
    assert {answer["version"] for *_, answer in load.outcomes} == {2, 3}
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
            load.wait_for_answers(20, 0)
            killed_at = time.monotonic()
            os.kill(workers[0], signal.SIGKILL)
            deadline = killed_at + 30
            while time.monotonic() < deadline and not gone(workers[0]):
                time.sleep(0.01)
            gone_at = time.monotonic()
            while time.monotonic() < deadline and len(set(children(process.pid)) - {workers[0]}) < 2:
                time.sleep(0.05)
            replaced_at = time.monotonic()
            wait_for(url, process.pid, "linear-regression", [1, 2])  # the new worker answers too
            load.wait_for_answers(20, replaced_at)
        replaced = set(children(process.pid))
        assert len(replaced) == 2 and workers[0] not in replaced
        assert call(url, "/v2/health/ready")[0] == 200
    finally:
        stop_server(process)
    # Each worker listens on its own SO_REUSEPORT socket, so what the dead one loses is what it had accepted
    # and what the kernel had queued on its socket until that socket closed with the process (a client that
    # reconnects at once may land in that queue again). Nothing else fails: no 5xx, and no request sent after the
    # dead worker was reaped (its socket closed before), judged by when each was sent, not by a time window.
    failures = [(sent, back, outcome) for sent, back, outcome, _ in load.outcomes if outcome != 200]
    assert all(isinstance(outcome, str) and "connection" in outcome.lower() for *_, outcome in failures), failures
    assert all(sent <= gone_at and back >= killed_at for sent, back, _ in failures), (killed_at, gone_at, failures)
    assert load.answered_since(gone_at) > 20
    check_answers(load, expected_y(root, "linear-regression", 1.0))


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


def test_access_log_has_one_text_line_per_request_with_control_characters_escaped(root, tmp_path):
    process, url = start_server(root, tmp_path, "--access-log", "text")
    try:
        for x in range(3):
            assert call(url, "/v1/models/linear-regression/predict", json.dumps({"x": x}).encode())[0] == 200
        assert call(url, "/v1/models/nope%0Aforged/predict", b'{"x": 1}')[0] == 404
    finally:
        log = stop_server(process)
    lines = [line for line in log.splitlines() if '"POST /v1/models/' in line]
    predictions = [line for line in lines if '"POST /v1/models/linear-regression/predict" 200 ' in line]
    assert len(predictions) == 3, lines
    assert all(line.endswith("ms") and float(line.rsplit(" ", 1)[1][:-2]) > 0 for line in predictions)
    (refused,) = [line for line in lines if "nope" in line]
    assert '"POST /v1/models/nope\\x0aforged/predict" 404 ' in refused  # one line: the newline is escaped
    assert not any(line.startswith("forged") for line in log.splitlines())
