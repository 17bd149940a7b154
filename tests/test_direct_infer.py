"""/v2 infer as `zoo serve`'s ASGI front answers it without Flask (serve/v2.py DirectInfer) against the same request
through Flask's route: the same status, body, headers, /metrics counts and statistics, answers and errors alike."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import numpy as np
import pytest

from zoo.serve import create_app
from zoo.serve.front import BufferedWSGI
from zoo.serve.metrics import instruments
from zoo.serve.statistics import model_statistics
from zoo.serve.v2 import INFER_ROUTES, DirectInfer
from zoo.store.versions import RELEASED_WEIGHTS

DIGIT = np.linspace(0, 1, 784, dtype=np.float32).reshape(1, 1, 28, 28)


def v2(model: str, values: Any, shape: list[int], **extra: Any) -> bytes:
    return json.dumps({"inputs": [{"name": "image" if model != "linear-regression" else "x", "shape": shape,
                                   "datatype": "FP32", "data": values}], **extra}).encode()


def binary_request(x: np.ndarray) -> tuple[bytes, dict[str, str]]:
    header = json.dumps({"inputs": [{"name": "x", "shape": list(x.shape), "datatype": "FP32",
                                     "parameters": {"binary_data_size": x.nbytes}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + x.tobytes(), {"Inference-Header-Content-Length": str(len(header))}


REQUESTS: dict[str, tuple[str, bytes, dict[str, str]]] = {
    "a digit": ("/v2/models/mnist-mlp/infer", v2("mnist-mlp", DIGIT.reshape(-1).tolist(), [1, 1, 28, 28]), {}),
    "a digit with an id, version named": (
        "/v2/models/mnist-mlp/versions/1/infer",
        v2("mnist-mlp", DIGIT.reshape(-1).tolist(), [1, 1, 28, 28], id="req-7"), {}),
    "values for the regression": ("/v2/models/linear-regression/infer", v2("linear-regression", [1.0, 2.5], [2, 1]),
                                  {}),
    "binary tensors both ways": ("/v2/models/linear-regression/infer",
                                 *binary_request(np.array([[1.0], [-3.0]], dtype=np.float32))),
    "invalid JSON": ("/v2/models/mnist-mlp/infer", b'{"inputs": [', {}),
    "a wrong shape": ("/v2/models/mnist-mlp/infer", v2("mnist-mlp", [0.5] * 10, [1, 10]), {}),
    "an unknown model": ("/v2/models/no-such-model/infer", v2("mnist-mlp", [0.5], [1]), {}),
    "an unknown version": ("/v2/models/mnist-mlp/versions/99/infer", v2("mnist-mlp", [0.5], [1]), {}),
    "a bad header length": ("/v2/models/linear-regression/infer", b"{}", {"Inference-Header-Content-Length": "x"}),
    "a non-ASCII model name": ("/v2/models/m\u00e9nist/infer", v2("mnist-mlp", [0.5], [1]), {}),
}


@pytest.fixture(scope="module")
def app():
    return create_app({"WEIGHTS_DIR": str(RELEASED_WEIGHTS), "MODELS": ["mnist-mlp", "linear-regression"],
                       "POLL_SECONDS": 0, "ACCESS_LOG": "json"})


@pytest.fixture
def direct_calls(monkeypatch) -> list[str]:
    """The paths DirectInfer answered (so that a test knows the front, not Flask, gave an answer)."""
    calls: list[str] = []
    answer = DirectInfer.__call__

    def spied(self: DirectInfer, route: Any, path: str, *args: Any) -> Any:
        calls.append(path)
        return answer(self, route, path, *args)

    monkeypatch.setattr(DirectInfer, "__call__", spied)
    return calls


def through_front(front: BufferedWSGI, path: str, body: bytes, headers: dict[str, str],
                  method: str = "POST") -> dict[str, Any]:
    """One request through the ASGI front as granian hands it over: its status, headers and body."""
    sent: list[dict[str, Any]] = []
    scope = {"type": "http", "method": method, "path": path, "query_string": b"", "http_version": "1.1",
             "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "root_path": "",
             "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                         *((k.encode(), v.encode()) for k, v in headers.items())]}

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(front(scope, receive, send))
    start, answer = sent
    return {"status": start["status"], "body": answer["body"],
            "headers": {k.decode().lower(): v.decode() for k, v in start["headers"]}}


def requests_counted(model: str, version: str, route: str, status: int) -> float:
    return instruments().requests.labels(model, version, route, str(status))._value.get()


@pytest.mark.parametrize("case", list(REQUESTS))
def test_the_front_answers_infer_as_flask_does(app, case, direct_calls):
    path, body, headers = REQUESTS[case]
    front = BufferedWSGI(app, threads=1)
    flask = app.test_client().post(path, data=body, headers=headers, content_type="application/json")
    direct = through_front(front, path, body, headers)
    assert direct_calls == [path]
    assert direct["status"] == flask.status_code
    assert direct["body"] == flask.get_data(), case
    for header in ("content-type", "content-length", "x-content-type-options", "inference-header-content-length"):
        assert direct["headers"].get(header) == flask.headers.get(header), header
    if flask.status_code == 200:
        document = json.loads(direct["body"][:int(direct["headers"].get("inference-header-content-length",
                                                                         len(direct["body"])))])
        assert document["model_version"] == "1"


def test_the_front_counts_and_logs_a_direct_answer_as_flask_does(app, caplog, direct_calls):
    """/metrics, the statistics and the access log see a directly answered request as they see Flask's."""
    front = BufferedWSGI(app, threads=1)
    path, body, headers = REQUESTS["a digit"]
    versioned = "/v2/models/mnist-mlp/versions/1/infer"
    counted = [("mnist-mlp", "1", INFER_ROUTES[0], 200), ("mnist-mlp", "1", INFER_ROUTES[1], 200),
               ("unserved", "", INFER_ROUTES[0], 404)]  # made-up names share one series
    before = [requests_counted(*labels) for labels in counted]
    (stats_before,) = model_statistics(app.extensions["zoo.models"], "mnist-mlp", "1")
    with caplog.at_level(logging.INFO, logger="zoo.access"):
        assert through_front(front, path, body, headers)["status"] == 200
        assert through_front(front, versioned, body, headers)["status"] == 200
        assert through_front(front, "/v2/models/made-up/infer", body, {})["status"] == 404
    assert len(direct_calls) == 3
    assert [requests_counted(*labels) - count for labels, count in zip(counted, before, strict=True)] == [1, 1, 1]
    (stats,) = model_statistics(app.extensions["zoo.models"], "mnist-mlp", "1")
    assert stats["inference_count"] == stats_before["inference_count"] + 2
    assert stats["inference_stats"]["success"]["count"] == stats_before["inference_stats"]["success"]["count"] + 2
    lines = [json.loads(record.getMessage()) for record in caplog.records if record.name == "zoo.access"]
    assert [(line["path"], line["status"], line["model"], line["version"]) for line in lines] == [
        (path, 200, "mnist-mlp", "1"), (versioned, 200, "mnist-mlp", "1"),
        ("/v2/models/made-up/infer", 404, "unserved", "")]


def test_the_front_leaves_to_flask_what_it_does_not_answer_itself(app, direct_calls):
    """An encoded body (415), another method (405) and a path past the route (404) are Flask's own answers."""
    front = BufferedWSGI(app, threads=1)
    path, body, _ = REQUESTS["a digit"]
    for method, where, headers, status in [("POST", path, {"Content-Encoding": "gzip"}, 415),
                                           ("PUT", path, {}, 405), ("POST", path + "/", {}, 404)]:
        direct = through_front(front, where, body, headers, method)
        flask = app.test_client().open(where, method=method, data=body, headers=headers,
                                       content_type="application/json")
        assert (direct["status"], direct["body"]) == (status, flask.get_data()), (method, where)
    assert direct_calls == []
