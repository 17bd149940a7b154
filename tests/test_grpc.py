"""The v2 protocol over gRPC (serve/grpc_front.py) in this process, driven by tritonclient.grpc and by raw
ModelInferRequests, beside the same requests over HTTP; Triton's statistics extension over both."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading

import grpc
import numpy as np
import pytest
import serving
import tritonclient.grpc as triton
from serving import ReservedPort, mnist_digits
from typer.testing import CliRunner

from zoo.cli.main import app as cli
from zoo.serve import create_app
from zoo.serve.front import BufferedWSGI
from zoo.serve.grpc_front import SERVICE, GrpcFront
from zoo.serve.grpc_protocol import generate
from zoo.serve.grpc_protocol import grpc_predict_v2_pb2 as pb

served_weights = serving.served_weights  # the shared fixture, seen by this module's tests
LIMIT = 1 << 20


@pytest.fixture(scope="module")
def app(served_weights):
    return create_app({"WEIGHTS_DIR": str(served_weights), "MAX_BATCH": 64, "MAX_CONTENT_LENGTH": LIMIT})


class Running:
    """A GrpcFront serving `app` on an event loop of its own thread, on a free port."""

    def __init__(self, app, front: BufferedWSGI | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.grpc = GrpcFront(app, front)
        port = asyncio.run_coroutine_threadsafe(self.grpc.start("127.0.0.1", 0), self.loop).result(30)
        self.address = f"127.0.0.1:{port}"

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.grpc.stop(0), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def address(app):
    running = Running(app)
    yield running.address
    running.close()


@pytest.fixture
def client(address):
    return triton.InferenceServerClient(address)


def rpc(address: str, method: str, request):
    """Call one RPC with the zoo's own messages (what a client built from grpc_predict_v2.proto sends)."""
    answer_type = pb._message(pb.SERVICE.methods_by_name[method].output_type.name)
    with grpc.insecure_channel(address) as channel:
        call = channel.unary_unary(f"/{SERVICE}/{method}", request_serializer=type(request).SerializeToString,
                                   response_deserializer=answer_type.FromString)
        return call(request, timeout=30)


def infer_request(model: str, name: str, array: np.ndarray, raw: bool = True, version: str = "", datatype="FP32"):
    tensor = pb.ModelInferRequest.InferInputTensor(name=name, datatype=datatype, shape=array.shape)
    if not raw:
        tensor.contents.fp32_contents.extend(array.reshape(-1).tolist())
    request = pb.ModelInferRequest(model_name=model, model_version=version, id="g1", inputs=[tensor])
    if raw:
        request.raw_input_contents.append(np.ascontiguousarray(array, "<f4").tobytes())
    return request


def refused(address: str, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as caught:
        rpc(address, "ModelInfer", request)
    return caught.value.code(), caught.value.details()


# --- the messages


def _fields(descriptor) -> dict[str, tuple[int, int, bool, str]]:
    return {f.name: (f.number, f.type, f.is_repeated, f.message_type.name if f.message_type else "")
            for f in descriptor.fields}


def test_the_messages_are_tritons_on_the_wire():
    """Every message of the zoo's proto has the fields, numbers and types of Triton's grpc_service.proto, which
    tritonclient.grpc is built from; the service has the same package and name."""
    from tritonclient.grpc import service_pb2 as theirs

    assert pb.SERVICE.full_name == theirs.DESCRIPTOR.services_by_name["GRPCInferenceService"].full_name
    pending = list(pb.DESCRIPTOR.message_types_by_name.values())
    while pending:
        ours = pending.pop()
        pending.extend(ours.nested_types)
        other = theirs.DESCRIPTOR.pool.FindMessageTypeByName(ours.full_name)
        assert _fields(ours) == _fields(other), ours.full_name
    for method in pb.SERVICE.methods:
        other = theirs.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods_by_name[method.name]
        assert (method.input_type.full_name, method.output_type.full_name) == (
            other.input_type.full_name, other.output_type.full_name)


KSERVE_FIELDS = """
import json
from kserve.protocol.grpc import grpc_predict_v2_pb2 as kserve
out, pending = {}, list(kserve.DESCRIPTOR.message_types_by_name.values())
while pending:
    message = pending.pop()
    pending.extend(message.nested_types)
    out[message.full_name] = {f.name: [f.number, f.type, f.is_repeated] for f in message.fields}
methods = kserve.DESCRIPTOR.services_by_name["GRPCInferenceService"].methods
print(json.dumps({"messages": out, "methods": [m.name for m in methods]}))
"""


def test_the_messages_carry_every_field_of_kserves_proto():
    """KServe's grpc_predict_v2_pb2 (from the kserve wheel; a process of its own, since it and tritonclient both
    claim `inference.*` in protobuf's default pool) has no field the zoo's messages lack or number otherwise."""
    kserve = json.loads(subprocess.run([sys.executable, "-c", KSERVE_FIELDS], capture_output=True, text=True,
                                       check=True).stdout)
    served = {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer"}
    assert served <= set(kserve["methods"]) and served <= {m.name for m in pb.SERVICE.methods}
    for name, fields in kserve["messages"].items():
        if "Repository" in name:  # KServe's load/unload RPCs, which the zoo does not offer
            continue
        ours = _fields(pb.POOL.FindMessageTypeByName(name))
        assert {key: list(value[:3]) for key, value in ours.items() if key in fields} == fields, name


def test_the_checked_in_messages_are_what_the_proto_generates():
    assert generate.main(["--check"]) == 0


# --- health, metadata, inference


def test_health_and_metadata_match_http(app, client):
    http = app.test_client()
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("lenet") and client.is_model_ready("linear-regression", "1")
    assert client.get_server_metadata(as_json=True)["extensions"] == http.get("/v2").get_json()["extensions"]
    for name, version in (("lenet", ""), ("linear-regression", "1"), ("linear-regression", "2")):
        ours = client.get_model_metadata(name, version, as_json=True)
        path = f"/v2/models/{name}" + (f"/versions/{version}" if version else "")
        theirs = http.get(path).get_json()
        for tensor in ours["inputs"] + ours["outputs"]:
            tensor["shape"] = [int(d) for d in tensor["shape"]]  # int64 comes as strings in protobuf's JSON
        assert {key: ours[key] for key in ("name", "versions", "platform", "inputs", "outputs")} == {
            key: theirs[key] for key in ("name", "versions", "platform", "inputs", "outputs")}


def test_tritonclient_grpc_infers_as_http_does(app, client, data_dir):
    digits, labels = mnist_digits(data_dir, 16)
    pixels = (digits / 255.0).astype(np.float32)[:, None]
    tensor = triton.InferInput("image", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    result = client.infer("lenet", [tensor], request_id="r1", outputs=[triton.InferRequestedOutput("logits")])
    logits = result.as_numpy("logits")
    assert logits.shape == (16, 10) and (logits.argmax(1) == labels).mean() >= 0.9
    response = result.get_response()
    assert response.id == "r1" and response.model_name == "lenet" and response.model_version == "1"
    body = {"inputs": [{"name": "image", "shape": list(pixels.shape), "datatype": "FP32",
                        "data": pixels.reshape(-1).tolist()}]}
    http = app.test_client().post("/v2/models/lenet/infer", json=body).get_json()["outputs"][0]
    np.testing.assert_allclose(logits, np.array(http["data"]).reshape(16, 10), atol=1e-5)
    x = triton.InferInput("x", [2, 1], "FP32")
    x.set_data_from_numpy(np.array([[0.0], [10.0]], np.float32))
    for version in ("1", "2"):
        answer = client.infer("linear-regression", [x], model_version=version)
        assert answer.get_response().model_version == version and abs(answer.as_numpy("y")[1, 0] - 35) < 1
    assert client.infer("linear-regression", [x]).get_response().model_version == "2"  # the latest


def test_typed_contents_are_answered_as_raw_ones(address):
    x = np.array([[1.0], [4.0], [-2.5]], np.float32)
    raw = rpc(address, "ModelInfer", infer_request("linear-regression", "x", x))
    typed = rpc(address, "ModelInfer", infer_request("linear-regression", "x", x, raw=False))
    assert raw.raw_output_contents == typed.raw_output_contents and len(raw.raw_output_contents[0]) == 12
    assert list(typed.outputs[0].shape) == [3, 1] and typed.outputs[0].datatype == "FP32" and typed.id == "g1"


def test_bad_requests_get_their_grpc_codes_and_the_messages_http_gives(app, address, monkeypatch):
    x = np.ones([2, 1], np.float32)
    http = app.test_client()
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    both = infer_request("linear-regression", "x", x)
    both.inputs[0].contents.fp32_contents.extend([1.0, 2.0])
    cases = [
        (infer_request("linear-regression", "y", x), invalid, "expected input named 'x', got 'y'"),
        (infer_request("linear-regression", "x", x, datatype="FP64"), invalid, "with datatype FP32, got 'FP64'"),
        (infer_request("linear-regression", "x", np.array([[np.nan], [1]])), invalid, "NaN or infinity"),
        (infer_request("linear-regression", "x", np.ones([2, 1, 1, 1, 1, 1, 1, 1, 1])), invalid, "8 dimensions"),
        (infer_request("linear-regression", "x", np.ones([65, 1])), invalid, "a batch of at most 64 items, got 65"),
        (infer_request("lenet", "image", np.ones([1, 784])), invalid, "lenet expects image of shape"),
        (both, invalid, "no typed contents"),
        (infer_request("nope", "x", x), grpc.StatusCode.NOT_FOUND, "unknown model 'nope'"),
        (infer_request("linear-regression", "x", x, version="01"), grpc.StatusCode.NOT_FOUND, "no version '01'"),
        (infer_request("linear-regression", "x", x, version="9"), grpc.StatusCode.NOT_FOUND, "no version '9'"),
        (infer_request("mnist-mlp", "image", np.zeros([350, 1, 28, 28])), grpc.StatusCode.RESOURCE_EXHAUSTED,
         f"{LIMIT}"),
    ]
    for request, code, words in cases:
        got, message = refused(address, request)
        assert got == code and words in message, (code, words, got, message)
    short = infer_request("linear-regression", "x", x)
    short.raw_input_contents[0] = short.raw_input_contents[0][:4]
    assert refused(address, short) == (invalid, "expected input 'x' of shape [2, 1] to carry 2 values, got 1")
    # The same mistake over HTTP says the same.
    body = {"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP64", "data": [1, 2]}]}
    assert "with datatype FP32, got 'FP64'" in http.post("/v2/models/linear-regression/infer", json=body).get_json()[
        "error"]
    served = app.extensions["zoo.models"]
    monkeypatch.setattr(served, "opened", False)
    assert refused(address, infer_request("linear-regression", "x", x))[0] == grpc.StatusCode.UNAVAILABLE
    assert not triton.InferenceServerClient(address).is_server_ready()


def test_a_full_worker_queue_refuses_grpc_as_http_with_unavailable(app):
    front = BufferedWSGI(app, 1)
    running = Running(app, front)
    try:
        request = infer_request("linear-regression", "x", np.ones([1, 1], np.float32))
        assert rpc(running.address, "ModelInfer", request).model_version == "2"
        front.queued = front.max_queue
        code, message = refused(running.address, request)
        assert code == grpc.StatusCode.UNAVAILABLE and f"{front.max_queue} requests waiting" in message
    finally:
        front.queued = 0
        running.close()


def test_a_grpc_port_in_use_or_equal_to_the_http_port_is_refused_in_one_line():
    import socket

    runner = CliRunner()
    with ReservedPort() as http, socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        result = runner.invoke(cli, ["serve", "--port", str(http.port), "--grpc-port", str(taken.getsockname()[1])])
        assert result.exit_code == 2 and "Address already in use" in result.output and "--grpc-port" in result.output
        result = runner.invoke(cli, ["serve", "--port", str(http.port), "--grpc-port", str(http.port)])
        assert result.exit_code == 2 and "--grpc-port must differ from --port" in result.output
        result = runner.invoke(cli, ["serve", "--port", str(http.port), "--grpc-port", "70000"])
        assert result.exit_code == 2 and "--grpc-port must be a TCP port from 1 to 65535, got 70000" in " ".join(
            result.output.split())


# --- statistics


def _figures(stats: list[dict]) -> dict[tuple[str, str], tuple[int, ...]]:
    return {(s["name"], s["version"]): (
        int(s["inference_count"]), int(s["execution_count"]),
        int(s["inference_stats"]["success"]["count"]), int(s["inference_stats"]["fail"]["count"]),
        int(s["inference_stats"]["queue"]["count"]), int(s["inference_stats"]["compute_infer"]["count"]))
        for s in stats}


def test_statistics_over_http_and_grpc_count_the_requests_sent(app, client):
    http = app.test_client()
    before = _figures(http.get("/v2/models/stats").get_json()["model_stats"])
    assert set(before) == {("lenet", "1"), ("mnist-mlp", "1"), ("linear-regression", "1"),
                           ("linear-regression", "2")}
    for batch in (1, 3, 5):  # 9 inferences in 3 executions over HTTP, on version 2 (the latest)
        body = {"inputs": [{"name": "x", "shape": [batch, 1], "datatype": "FP32", "data": [1.0] * batch}]}
        assert http.post("/v2/models/linear-regression/infer", json=body).status_code == 200
    x = triton.InferInput("x", [4, 1], "FP32")
    x.set_data_from_numpy(np.ones([4, 1], np.float32))
    for _ in range(2):  # 8 inferences in 2 executions over gRPC
        client.infer("linear-regression", [x], model_version="2")
    bad = {"inputs": [{"name": "x", "shape": [2, 1], "datatype": "FP32", "data": [1.0]}]}
    assert http.post("/v2/models/linear-regression/infer", json=bad).status_code == 400
    with pytest.raises(triton.InferenceServerException):
        wrong = triton.InferInput("x", [1, 1], "FP32")
        wrong.set_data_from_numpy(np.array([[np.inf]], np.float32))
        client.infer("linear-regression", [wrong])
    one = http.get("/v2/models/linear-regression/versions/2/stats").get_json()["model_stats"]
    over_grpc = client.get_inference_statistics("linear-regression", "2", as_json=True)["model_stats"]
    after = _figures(http.get("/v2/models/stats").get_json()["model_stats"])
    key = ("linear-regression", "2")
    delta = tuple(a - b for a, b in zip(after[key], before[key], strict=True))
    assert delta == (17, 5, 5, 2, 5, 5)
    assert _figures(one) == _figures(over_grpc) == {key: after[key]}
    assert all(after[k] == before[k] for k in after if k != key)
    stats = one[0]["inference_stats"]
    parts = sum(stats[stage]["ns"] for stage in ("queue", "compute_input", "compute_infer", "compute_output"))
    assert 0 < stats["compute_infer"]["ns"] <= parts <= stats["success"]["ns"] and stats["fail"]["ns"] > 0
    assert one[0]["last_inference"] > 1.7e12  # milliseconds since the epoch
    both = {s["version"] for s in http.get("/v2/models/linear-regression/stats").get_json()["model_stats"]}
    assert both == {"1", "2"}
    assert http.get("/v2/models/nope/stats").status_code == 404
    assert http.get("/v2/models/linear-regression/versions/7/stats").status_code == 404
    with pytest.raises(triton.InferenceServerException, match="NOT_FOUND"):
        client.get_inference_statistics("nope")
