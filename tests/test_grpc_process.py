"""`zoo serve` over gRPC as a real process: every worker answers, one set of figures (statistics, /metrics, the
access log) across them, version policy and hot reload, a killed worker, KServe's own clients, the README's
snippet."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import serving
import tritonclient.grpc as triton
from serving import call, children, start_server, stop_server

import zoo
from zoo.serve.grpc_front import SERVICE

pytestmark = pytest.mark.slow
served_weights = serving.served_weights
root = serving.root
README = Path(__file__).resolve().parent.parent / "README.md"
INFER = f"/{SERVICE}/ModelInfer"


def sockets_on(port: int, state: str) -> set[int]:
    """Inodes of this machine's TCP sockets whose local port is `port`, in `state` (01 established, 0A listen)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                inodes.add(int(fields[9]))
    return inodes


def owners(pids: list[int], inodes: set[int]) -> set[int]:
    """Which of `pids` hold one of the sockets `inodes`."""
    held = set()
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if any(link.startswith("socket:[") and int(link[8:-1]) in inodes for link in links):
            held.add(pid)
    return held


def client(address: str) -> triton.InferenceServerClient:
    """A client with a connection of its own (gRPC shares one between channels to the same address by default)."""
    return triton.InferenceServerClient(address, channel_args=[("grpc.use_local_subchannel_pool", 1)])


def regression_input(batch: int) -> triton.InferInput:
    x = triton.InferInput("x", [batch, 1], "FP32")
    x.set_data_from_numpy(np.arange(batch, dtype=np.float32)[:, None])
    return x


def grpc_server(root: Path, tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str, str, int]:
    process, url = start_server(root, tmp_path, "--grpc-port", "{grpc_port}", *args)
    port = int(process.args[process.args.index("--grpc-port") + 1])
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30  # the HTTP readiness can come before every worker's gRPC listens
    while len(owners(children(process.pid), sockets_on(port, "0A"))) < len(children(process.pid)):
        assert time.monotonic() < deadline, "the workers did not all listen on the gRPC port"
        time.sleep(0.2)
    return process, url, address, port


def metric(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()))


def test_every_worker_answers_grpc_and_the_figures_add_up_across_them(root, tmp_path):
    process, url, address, port = grpc_server(root, tmp_path, "--workers", "2", "--access-log", "json")
    try:
        clients = [client(address) for _ in range(8)]
        errors: list[BaseException] = []

        def send(each: triton.InferenceServerClient) -> None:
            try:
                for _ in range(25):
                    assert each.infer("linear-regression", [regression_input(2)]).as_numpy("y").shape == (2, 1)
            except BaseException as error:  # noqa: BLE001 (reported below)
                errors.append(error)

        threads = [threading.Thread(target=send, args=(each,)) for each in clients]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        assert not errors, errors[:3]
        # The kernel spread the eight connections over both workers' sockets.
        workers = children(process.pid)
        assert owners(workers, sockets_on(port, "01")) == set(workers)
        body = json.dumps({"inputs": [{"name": "x", "shape": [3, 1], "datatype": "FP32", "data": [1, 2, 3]}]})
        for _ in range(3):
            assert call(url, "/v2/models/linear-regression/infer", body.encode())[0] == 200
        with pytest.raises(triton.InferenceServerException, match="NOT_FOUND"):
            clients[0].infer("linear-regression", [regression_input(1)], model_version="7")
        # Statistics: 25 x 8 gRPC requests of 2 and 3 HTTP requests of 3, whichever worker answered each.
        for _ in range(4):  # any worker answers for all of them
            (http,) = call(url, "/v2/models/linear-regression/versions/2/stats")[1]["model_stats"]
            assert (http["inference_count"], http["execution_count"]) == (409, 203)
            (over_grpc,) = clients[1].get_inference_statistics("linear-regression", "2", as_json=True)["model_stats"]
            assert int(over_grpc["inference_count"]) == 409 and int(over_grpc["execution_count"]) == 203
            assert int(over_grpc["inference_stats"]["success"]["count"]) == 203
        text = urllib_text(url + "/metrics")
        assert metric(text, "zoo_requests_total", route=INFER, status="OK", model="linear-regression") == 200
        assert metric(text, "zoo_requests_total", route=INFER, status="NOT_FOUND") == 1
    finally:
        log = stop_server(process)
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    infers = [line for line in lines if line["method"] == "GRPC" and line["path"] == INFER]
    assert len(infers) == 201 and sum(line["status"] == "OK" for line in infers) == 200
    assert {line["version"] for line in infers if line["status"] == "OK"} == {"2"}
    assert "Traceback" not in log, log


def urllib_text(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as response:
        return response.read().decode()


def test_grpc_serves_the_version_policy_and_new_versions_without_a_restart(root, tmp_path):
    process, url, address, _ = grpc_server(root, tmp_path, "--models", "linear-regression", "--versions",
                                           "latest:1", "--poll-seconds", "1")
    try:
        each = client(address)
        assert each.get_model_metadata("linear-regression", as_json=True)["versions"] == ["2"]
        for model, version in (("linear-regression", "1"), ("lenet", "")):
            with pytest.raises(triton.InferenceServerException, match="NOT_FOUND"):
                each.infer(model, [regression_input(1)], model_version=version)
        zoo.train("linear-regression", overrides={"epochs": 20}, weights_dir=str(root))
        zoo.export("linear-regression:3", weights_dir=str(root))
        deadline = time.monotonic() + 30
        while each.get_model_metadata("linear-regression", as_json=True)["versions"] != ["3"]:
            assert time.monotonic() < deadline, "version 3 was not served over gRPC within 30 s"
            time.sleep(0.2)
        assert each.infer("linear-regression", [regression_input(1)]).get_response().model_version == "3"
    finally:
        log = stop_server(process)
    assert "Traceback" not in log, log


def test_a_killed_worker_costs_only_its_grpc_requests_in_flight(root, tmp_path):
    process, url, address, port = grpc_server(root, tmp_path, "--workers", "2")
    outcomes: list[tuple[float, str]] = []
    stop = threading.Event()

    def send() -> None:
        each = client(address)
        while not stop.is_set():
            try:
                each.infer("linear-regression", [regression_input(1)], client_timeout=30)
                outcome = "OK"
            except triton.InferenceServerException as error:
                outcome = str(error.status())
            outcomes.append((time.monotonic(), outcome))

    threads = [threading.Thread(target=send, daemon=True) for _ in range(4)]
    try:
        workers = children(process.pid)
        for thread in threads:
            thread.start()
        time.sleep(1)
        killed_at = time.monotonic()
        os.kill(workers[0], signal.SIGKILL)
        deadline = killed_at + 30
        while time.monotonic() < deadline and Path(f"/proc/{workers[0]}").exists() and not zombie(workers[0]):
            time.sleep(0.01)
        gone_at = time.monotonic()
        while time.monotonic() < deadline and len(owners(children(process.pid), sockets_on(port, "0A"))) < 2:
            time.sleep(0.2)
        time.sleep(1)
        stop.set()
        for thread in threads:
            thread.join(60)
        replaced = children(process.pid)
        assert len(replaced) == 2 and workers[0] not in replaced, (workers, replaced)
        listening = owners(replaced, sockets_on(port, "0A"))
        assert listening == set(replaced), (replaced, listening)  # the new worker serves gRPC too
    finally:
        stop.set()
        stop_server(process)
    # A client's connection to the dead worker breaks: what it had in flight fails UNAVAILABLE, and its next
    # request reconnects to a live worker. Nothing fails otherwise, nor after the worker is gone.
    failures = [(at, outcome) for at, outcome in outcomes if outcome != "OK"]
    assert all("UNAVAILABLE" in outcome for _, outcome in failures), failures
    assert all(killed_at <= at <= gone_at + 1 for at, _ in failures), (killed_at, gone_at, failures)
    assert sum(1 for at, outcome in outcomes if at > gone_at + 1 and outcome == "OK") > 20


def zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


KSERVE_CLIENTS = r'''
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

url, address = sys.argv[1], sys.argv[2]
x = np.array([[0.0], [10.0]], np.float32)


def request(binary: bool) -> InferRequest:
    if binary:
        tensor = InferInput("x", [2, 1], "FP32")
        tensor.set_data_from_numpy(x, binary_data=True)
    else:
        tensor = InferInput("x", [2, 1], "FP32", data=[0.0, 10.0])
    return InferRequest("linear-regression", [tensor], request_id="k1", model_version="1")


async def main() -> dict:
    out = {}
    rest = InferenceRESTClient(RESTConfig(protocol="v2", retries=0))
    out["rest_live"] = await rest.is_server_live(url)
    out["rest_ready"] = await rest.is_server_ready(url)
    out["rest_model_ready"] = await rest.is_model_ready(url, "lenet")
    for binary in (False, True):
        answer = await rest.infer(url, request(binary), model_name="linear-regression")
        out[f"rest_binary_{binary}"] = [answer.id, answer.model_version, answer.outputs[0].as_numpy().tolist()]
    try:
        await rest.infer(url, request(False), model_name="nope")
    except Exception as error:
        out["rest_unknown"] = str(error)
    await rest.close()
    grpc_client = InferenceGRPCClient(address)
    out["grpc_live"] = await grpc_client.is_server_live()
    out["grpc_ready"] = await grpc_client.is_server_ready()
    out["grpc_model_ready"] = await grpc_client.is_model_ready("lenet")
    for binary in (False, True):
        answer = await grpc_client.infer(request(binary))
        out[f"grpc_binary_{binary}"] = [answer.id, answer.model_version, answer.outputs[0].as_numpy().tolist()]
    bad = InferInput("x", [2, 1], "FP32", data=[1.0])
    try:
        await grpc_client.infer(InferRequest("linear-regression", [bad]))
    except Exception as error:
        out["grpc_bad"] = [str(error.code()), error.details()]
    await grpc_client.close()
    return out


print(json.dumps(asyncio.run(main())))
'''


def test_kserves_own_clients_call_zoo_serve_unchanged(root, tmp_path):
    """KServe's InferenceRESTClient and InferenceGRPCClient (kserve 0.21), in a process of their own: the kserve
    SDK and tritonclient.grpc cannot share one (both claim `inference.*` in protobuf's default pool)."""
    process, url, address, _ = grpc_server(root, tmp_path)
    try:
        result = subprocess.run([sys.executable, "-c", KSERVE_CLIENTS, url, address], capture_output=True,
                                text=True, timeout=120)
    finally:
        log = stop_server(process)
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["rest_live"] and out["rest_ready"] and out["rest_model_ready"]
    assert out["grpc_live"] and out["grpc_ready"] and out["grpc_model_ready"]
    for key in ("rest_binary_False", "rest_binary_True", "grpc_binary_False", "grpc_binary_True"):
        request_id, version, y = out[key]
        assert request_id == "k1" and abs(y[0][0] - 30) < 1 and abs(y[1][0] - 35) < 1, (key, out[key])
        # KServe's InferResponse.from_bytes (its REST client) does not read model_version; from_grpc does.
        assert version == ("1" if key.startswith("grpc") else None), (key, out[key])
    assert "404" in out["rest_unknown"] and "unknown model 'nope'" in out["rest_unknown"]
    assert out["grpc_bad"][0] == "StatusCode.INVALID_ARGUMENT"
    assert "of shape [2, 1] to carry 2 values, got 1" in out["grpc_bad"][1]
    assert "Traceback" not in log, log


def test_the_readmes_grpc_snippet_runs_as_written(root, tmp_path):
    (snippet,) = [block for block in re.findall(r"```python\n(.*?)```", README.read_text(), re.DOTALL)
                  if "tritonclient.grpc" in block]
    process, url, address, _ = grpc_server(root, tmp_path, "--models", "linear-regression,lenet")
    try:
        script = tmp_path / "snippet.py"
        script.write_text(snippet.replace("localhost:8001", address).replace("localhost:8000", url[7:]))
        result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    finally:
        stop_server(process)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip(), "the snippet printed nothing"
