"""The request readers called directly, without a server: the v2 codec (serve/v2_codec.py), the v1 forms
(serve/forms.py) and the checks both share (serve/checks.py).

tests/test_serve.py and tests/test_hostile.py send the same kinds of request through Flask; these pin each rule and
each message's content at its source, on real ONNX runtimes of the served weights, in well under a second, which is
what lets benchmarks/mutation.sh run them once per mutant.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math

import numpy as np
import pytest
import serving
from conftest import encoded
from werkzeug.exceptions import UnsupportedMediaType
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

import zoo
from zoo.catalog import describe
from zoo.core.errors import InvalidInputError, NotExportableError
from zoo.core.registry import get_model
from zoo.core.spec import InputForm
from zoo.serve import checks, forms, v2_codec
from zoo.serve.checks import RequestLimits

served_weights = serving.served_weights
LIMITS = RequestLimits(max_batch=4, max_image_pixels=64 * 64)


@pytest.fixture(scope="module")
def mlp(served_weights) -> zoo.Runtime:
    return zoo.open_runtime("mnist-mlp", "onnx", weights_dir=str(served_weights))


@pytest.fixture(scope="module")
def regression(served_weights) -> zoo.Runtime:
    return zoo.open_runtime("linear-regression:1", "onnx", weights_dir=str(served_weights))


def refused(match: str):
    return pytest.raises(InvalidInputError, match=match)


def request(body: bytes | str | dict | None = None, content_type: str | None = "application/json") -> Request:
    """A werkzeug Request as a route would get it (a dict `body` is a multipart form)."""
    return Request(EnvironBuilder(method="POST", data=body, content_type=content_type).get_environ())


# --- serve/checks.py


def test_parse_json_reads_json_and_refuses_what_is_not():
    assert checks.parse_json(b'{"a": [1, 2.5]}') == {"a": [1, 2.5]}
    # orjson refuses NaN; the standard parser's fallback reads it, so a later check can name it.
    assert math.isnan(checks.parse_json(b"[NaN]")[0])
    with refused("^expected a JSON document, got an empty body$"):
        checks.parse_json(b"")
    with refused(r"^expected a JSON document, got invalid JSON \(Expecting value: line 1 column 1"):
        checks.parse_json(b"nope")
    with refused(r"^expected a JSON document, got invalid JSON \(maximum recursion depth exceeded"):
        checks.parse_json(b"[" * 100_000)
    with pytest.raises(InvalidInputError) as caught:
        checks.parse_json(b'{"' + b"x" * 5000)
    assert len(str(caught.value)) < 260  # the parser's message is cut to 200 characters


def test_check_keys_names_the_allowed_and_the_unknown_keys_sorted():
    checks.check_keys({"a": 1}, {"a", "b"}, "the thing")
    checks.check_keys({}, {"a"}, "the thing")
    with refused(r"^expected the thing to have only 'a', 'b', got unknown key\(s\) 'c', 'd'$"):
        checks.check_keys({"d": 1, "a": 1, "c": 2}, {"b", "a"}, "the thing")


def test_check_batch_takes_the_limit_and_refuses_one_more():
    batch = np.zeros((4, 1), dtype=np.float32)
    assert checks.check_batch(batch, True, LIMITS) == (batch, True)
    assert checks.check_batch(batch[:1], False, LIMITS)[1] is False
    with refused("^expected a batch of at most 4 items, got 5$"):
        checks.check_batch(np.zeros((5, 1)), True, LIMITS)


def test_the_default_limits_and_that_no_reader_can_change_them():
    assert RequestLimits() == RequestLimits(256, 4096 * 4096)
    with pytest.raises(dataclasses.FrozenInstanceError):
        LIMITS.max_batch = 10**9  # type: ignore[misc]


def test_field_checks_the_type_and_refuses_a_boolean_as_a_number():
    document = {"id": "a", "n": 3, "flag": True, "x": 2.5}
    assert checks.field(document, "id", str, "the request's", "a string") == "a"
    assert checks.field(document, "missing", str, "the request's", "a string") is None
    assert checks.field(document, "x", (int, float), "the", "a number") == 2.5
    assert checks.field(document, "flag", bool, "the", "true or false") is True
    with refused("^expected the request's 'n' to be a string, got a number$"):
        checks.field(document, "n", str, "the request's", "a string")
    with refused("^expected the 'flag' to be a number, got a boolean$"):
        checks.field(document, "flag", (int, float), "the", "a number")
    with refused("^expected the 'flag' to be a number, got a boolean$"):
        checks.field(document, "flag", int, "the", "a number")


def test_json_type_names_each_json_type():
    names = [checks.json_type(v) for v in ({}, [], "s", True, 1, 1.5, None, b"x")]
    assert names == ["an object", "an array", "a string", "a boolean", "a number", "a number", "null", "bytes"]


def test_shown_keeps_80_characters_and_cuts_longer_values():
    assert checks.shown("a" * 78) == repr("a" * 78)  # 80 with the quotes
    assert checks.shown("a" * 79) == repr("a" * 79)[:77] + "..."
    assert len(checks.shown("a" * 79)) == 80
    assert checks.shown([1, 2]) == "[1, 2]"


def test_interface_refuses_a_model_without_inputs():
    assert checks.interface(get_model("linear-regression")).input.name == "x"
    with pytest.raises(NotExportableError, match="^himmelblau cannot be served: it has no forward pass over inputs$"):
        checks.interface(get_model("himmelblau"))


# --- serve/v2_codec.py: metadata


def test_tensor_metadata_in_v2_form():
    spec = checks.interface(get_model("mnist-mlp"))
    assert v2_codec.tensor_metadata(spec.input) == {"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}
    assert v2_codec.v2_shape(("N", 2)) == [-1, 2]
    assert v2_codec.wire_dtype(spec.input) == np.dtype("<f4")
    assert v2_codec.wire_dtype(spec.input).byteorder in "<="


def test_server_and_model_metadata(mlp, served_weights):
    from importlib.metadata import version

    assert v2_codec.server_metadata() == {"name": "zoo", "version": version("zoo"),
                                          "extensions": ["binary_tensor_data", "statistics"]}
    described = describe("mnist-mlp", [mlp.manifest])
    metadata = v2_codec.model_metadata(described, mlp)
    assert metadata == {
        "name": "mnist-mlp",
        "versions": [str(mlp.version)],
        "platform": "onnxruntime_onnx",
        "inputs": [{"name": "image", "datatype": "FP32", "shape": [-1, 1, 28, 28]}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
        "parameters": {"backend": "onnx", "file": "model.onnx"},
    }
    torch_runtime = zoo.open_runtime("mnist-mlp", "torch", weights_dir=str(served_weights))
    assert v2_codec.model_metadata(described, torch_runtime)["parameters"] == {
        "backend": "torch", "file": mlp.manifest["weights"]["file"]}


# --- serve/v2_codec.py: the body and the request document


@pytest.mark.parametrize("length, parts", [(None, (b"0123456789", b"")), ("0", (b"", b"0123456789")),
                                           ("4", (b"0123", b"456789")), ("10", (b"0123456789", b""))])
def test_split_body_at_the_header_length(length, parts):
    assert v2_codec.split_body(b"0123456789", length) == parts


@pytest.mark.parametrize("length", ["11", "04", "-1", "4 ", "²", "1" * 19, "", "x" * 100])
def test_split_body_refuses_lengths_that_are_not_a_byte_count_within_the_body(length):
    with refused(f"^Inference-Header-Content-Length must be a byte count within the 10-byte body, got "
                 f"{repr(length[:40])}$"):
        v2_codec.split_body(b"0123456789", length)


def test_split_body_takes_eighteen_digits():
    with refused("within the 3-byte body, got '100000000000000000'$"):
        v2_codec.split_body(b"abc", "1" + "0" * 17)


def v2(data=None, **tensor) -> dict:
    return {"inputs": [{"name": "image", "shape": [1, 1, 28, 28], "datatype": "FP32",
                        "data": [0.5] * 784 if data is None else data, **tensor}]}


def test_decode_request_reads_the_batch_id_and_binary_choice(mlp):
    decoded = v2_codec.decode_request({**v2(), "id": "r1", "model_name": "mnist-mlp", "model_version": "1"},
                                      b"", mlp, LIMITS)
    assert decoded.id == "r1" and decoded.binary_output is False
    assert decoded.batch.shape == (1, 1, 28, 28) and decoded.batch.dtype == np.float32
    assert np.all(decoded.batch == 0.5)
    assert v2_codec.decode_request(v2(), b"", mlp, LIMITS).id is None
    bare = v2_codec.InferRequest(decoded.batch)
    assert (bare.id, bare.binary_output) == (None, False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        decoded.binary_output = True  # type: ignore[misc]


@pytest.mark.parametrize("document", [[], None, {"inputs": {}}, {"inputs": []}, {"inputs": [1]},
                                      {"inputs": [{}, {}]}, {"input": []}])
def test_decode_request_wants_one_input_object(mlp, document):
    with refused(r'^expected a v2 infer request with one input, like \{"inputs": \[\{"name": "image", '
                 r'"shape": \[-1, 1, 28, 28\], "datatype": "FP32", "data": \[...\]\}\]\}$'):
        v2_codec.decode_request(document, b"", mlp, LIMITS)


@pytest.mark.parametrize("extra, message", [
    ({"idd": 1}, r"^expected a v2 infer request to have only 'id', .*, got unknown key\(s\) 'idd'$"),
    ({"id": 7}, "^expected the request's 'id' to be a string, got a number$"),
    ({"model_version": 1}, "^expected the request's 'model_version' to be a string, got a number$"),
    ({"model_name": 3}, "^expected the request's 'model_name' to be a string, got a number$"),
    ({"model_name": "lenet"}, "^expected 'model_name' 'mnist-mlp', the model of this route, got 'lenet'$"),
    ({"parameters": []}, "^expected the request's 'parameters' to be an object, got an array$"),
    ({"outputs": {}}, r"^expected the request's 'outputs' to be an array of \{\"name\": ...\} objects, got an object$"),
])
def test_decode_request_checks_each_request_field(mlp, extra, message):
    with refused(message):
        v2_codec.decode_request({**v2(), **extra}, b"", mlp, LIMITS)


@pytest.mark.parametrize("tensor, message", [
    ({"nam": "image"}, r"^expected input 'image' to have only 'data', 'datatype', 'name', 'parameters', 'shape', "
                       r"got unknown key\(s\) 'nam'$"),
    ({"name": "x"}, "^expected input named 'image', got 'x'$"),
    ({"datatype": "FP64"}, "^expected input 'image' with datatype FP32, got 'FP64'$"),
    ({"shape": [2, 1, 28, 28]}, r"^expected input 'image' of shape \[2, 1, 28, 28\] to carry 1568 values, got 784$"),
    ({"data": "abc"}, "^expected input 'image' 'data' to be an array, got a string$"),
    ({"data": {}}, "^expected input 'image' 'data' to be an array, got an object$"),
    ({"parameters": 1}, "^expected input 'image''s 'parameters' to be an object, got a number$"),
])
def test_decode_request_checks_the_input_tensor(mlp, tensor, message):
    with refused(message):
        v2_codec.decode_request(v2(**tensor), b"", mlp, LIMITS)


def test_a_shape_the_model_does_not_take_is_decoded_and_then_refused_by_the_runtime(mlp):
    """decode_request checks only that the values fill the shape sent; Runtime.run checks the model's own shape."""
    batch = v2_codec.decode_request(v2(shape=[1, 784]), b"", mlp, LIMITS).batch
    assert batch.shape == (1, 784)
    with refused(r"^mnist-mlp expects image of shape \[N, 1, 28, 28\], got \[1, 784\]$"):
        v2_codec.run(mlp, batch)


def test_an_input_must_carry_data_or_binary_data(mlp):
    document = v2()
    del document["inputs"][0]["data"]
    with refused(r"^expected input 'image' to carry 'data' \(or binary_data_size\), got neither$"):
        v2_codec.decode_request(document, b"", mlp, LIMITS)


def test_binary_input_is_read_little_endian(mlp):
    values = np.linspace(0, 1, 784, dtype="<f4")
    document = v2(parameters={"binary_data_size": 784 * 4})
    del document["inputs"][0]["data"]
    batch = v2_codec.decode_request(document, values.tobytes(), mlp, LIMITS).batch
    assert batch.dtype == np.float32 and batch.flags.writeable
    np.testing.assert_array_equal(batch.reshape(-1), values)


@pytest.mark.parametrize("size, binary", [(784 * 4, b"\0" * 783 * 4), (True, b"\0" * 4), (3, b"\0" * 3),
                                          ("3136", b"\0" * 3136), (-4, b"")])
def test_binary_sizes_must_be_the_bytes_that_came(mlp, size, binary):
    document = v2(parameters={"binary_data_size": size})
    del document["inputs"][0]["data"]
    with refused(f"^expected {checks.shown(size)} bytes of FP32 binary data after the JSON header, got {len(binary)}$"):
        v2_codec.decode_request(document, binary, mlp, LIMITS)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_binary_values_must_be_finite(mlp, bad):
    spec = checks.interface(mlp.spec).input
    raw = np.array([0.0, bad, 1.0, 2.0], dtype="<f4").tobytes()
    with refused("^expected finite values in input 'image', got NaN or infinity$"):
        v2_codec.tensor_values(spec, [4], LIMITS, raw=raw)


def test_raw_values_must_be_whole_numbers_of_their_size(mlp):
    spec = checks.interface(mlp.spec).input
    with refused("^expected input 'image' as whole FP32 values of 4 bytes, got 6 bytes$"):
        v2_codec.tensor_values(spec, [1], LIMITS, raw=b"\0" * 6)
    with refused("^expected input 'image' as whole FP32 values of 4 bytes, got 6 bytes$"):
        v2_codec.decode_input(spec, "image", "FP32", [1], LIMITS, raw=b"\0" * 6)


def test_tensor_values_check_the_count_and_the_batch_limit(mlp):
    spec = checks.interface(mlp.spec).input
    batch = v2_codec.decode_input(spec, "image", "FP32", [2, 3], LIMITS, data=[[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(batch, [[1, 2, 3], [4, 5, 6]])
    assert batch.dtype == np.float32
    assert v2_codec.tensor_values(spec, [4, 1], LIMITS, data=[1, 2, 3, 4]).shape == (4, 1)
    with refused("^expected a batch of at most 4 items, got 5$"):
        v2_codec.tensor_values(spec, [5], LIMITS, data=[1, 2, 3, 4, 5])
    with refused(r"^expected input 'image' of shape \[2, 2\] to carry 4 values, got 3$"):
        v2_codec.tensor_values(spec, [2, 2], LIMITS, data=[1, 2, 3])
    # Python's product, not numpy's, which would wrap these dimensions round to 0 values.
    with refused("to carry 18446744073709551616 values, got 1$"):
        v2_codec.tensor_values(spec, [2**32, 2**32], LIMITS, data=[1])
    with refused("^expected finite input 'image' data, got NaN"):
        v2_codec.tensor_values(spec, [1], LIMITS, data=[float("nan")])


@pytest.mark.parametrize("shape", [[1], [0], [1] * 8, [3, 0, 5]])
def test_tensor_shapes_that_are_taken(shape):
    assert v2_codec.tensor_shape(shape, "x") is shape


@pytest.mark.parametrize("shape, message", [
    ((1, 2), r"as a list of non-negative integers, got \(1, 2\)$"),
    ([1, -1], r"as a list of non-negative integers, got \[1, -1\]$"),
    ([1, True], r"as a list of non-negative integers, got \[1, True\]$"),
    ([1, 2.0], r"as a list of non-negative integers, got \[1, 2.0\]$"),
    ("1", "as a list of non-negative integers, got '1'$"),
    ([], r"^expected input 'x' 'shape' of 1 to 8 dimensions \(the first is the batch\), got 0$"),
    ([1] * 9, r"^expected input 'x' 'shape' of 1 to 8 dimensions \(the first is the batch\), got 9$"),
])
def test_tensor_shapes_that_are_refused(shape, message):
    with refused(message):
        v2_codec.tensor_shape(shape, "x")


# --- serve/v2_codec.py: outputs


@pytest.mark.parametrize("document, binary", [
    ({}, False),
    ({"parameters": {"binary_data_output": True}}, True),
    ({"parameters": {"binary_data_output": False}}, False),
    ({"outputs": []}, False),
    ({"outputs": [], "parameters": {"binary_data_output": True}}, True),
    ({"outputs": [{"name": "logits"}]}, False),
    ({"outputs": [{"name": "logits"}], "parameters": {"binary_data_output": True}}, True),
    ({"outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}, True),
    ({"outputs": [{"name": "logits", "parameters": {"binary_data": False}}],
      "parameters": {"binary_data_output": True}}, False),
    ({"outputs": [{"name": "logits", "parameters": {}}], "parameters": {"binary_data_output": True}}, True),
    # The output named twice: its first entry says how it is sent.
    ({"outputs": [{"name": "logits", "parameters": {"binary_data": True}}, {"name": "logits"}]}, True),
    ({"outputs": [{"name": "logits"}, {"name": "logits", "parameters": {"binary_data": True}}]}, False),
])
def test_requested_binary(mlp, document, binary):
    assert v2_codec.requested_binary(document, "logits") is binary
    assert v2_codec.decode_request({**v2(), **document}, b"", mlp, LIMITS).binary_output is binary


@pytest.mark.parametrize("document, message", [
    ({"outputs": [{"name": "y"}]}, r"^expected 'outputs' to request only 'logits', got \[\{'name': 'y'\}\]$"),
    ({"outputs": ["logits"]}, r"^expected 'outputs' to request only 'logits', got \['logits'\]$"),
    ({"outputs": [{"name": "logits"}, {"name": "y"}]}, "to request only 'logits'"),
    ({"outputs": [{"name": "logits", "x": 1}]},
     r"^expected output 'logits' to have only 'name', 'parameters', got unknown key\(s\) 'x'$"),
    ({"outputs": [{"name": "logits", "parameters": {"binary_data": 1}}]},
     "^expected output 'logits''s parameter 'binary_data' to be true or false, got a number$"),
    ({"outputs": [{"name": "logits", "parameters": 1}]},
     "^expected output 'logits''s 'parameters' to be an object, got a number$"),
    ({"parameters": {"binary_data_output": "yes"}},
     "^expected the request's parameter 'binary_data_output' to be true or false, got a string$"),
])
def test_requested_outputs_that_are_refused(document, message):
    with refused(message):
        v2_codec.requested_binary(document, "logits")


def test_check_output_names_shows_the_names_without_the_request():
    v2_codec.check_output_names(["y", "y"], "y")
    with refused(r"^expected 'outputs' to request only 'y', got \['y', None\]$"):
        v2_codec.check_output_names(["y", None], "y")


def test_run_and_encode_response(mlp):
    batch = np.stack([np.zeros((1, 28, 28)), np.ones((1, 28, 28))]).astype(np.float32)
    result = v2_codec.run(mlp, batch)
    assert result.shape == (2, 10) and result.dtype == np.dtype("<f4") and result.flags.c_contiguous
    np.testing.assert_array_equal(result, mlp.run(batch))
    document, raw = v2_codec.encode_response("mnist-mlp", mlp, "r1", result, False)
    assert raw == b""
    assert document == {"model_name": "mnist-mlp", "model_version": str(mlp.version), "id": "r1", "outputs": [
        {"name": "logits", "datatype": "FP32", "shape": [2, 10], "data": result.reshape(-1).tolist()}]}
    document, raw = v2_codec.encode_response("mnist-mlp", mlp, None, result, True)
    assert "id" not in document and raw == result.tobytes()
    assert document["outputs"] == [{"name": "logits", "datatype": "FP32", "shape": [2, 10],
                                    "parameters": {"binary_data_size": 80}}]


# --- serve/forms.py


def test_json_field_reads_one_key_of_a_json_object():
    body = request('{"x": [1, 2]}')
    assert forms.json_field(body, "x", "EX") == [1, 2]
    assert body.get_data() == b""  # read once and not kept: a large body is not held twice while it is answered
    assert forms.json_field(request('{"x": 1}', "application/json; charset=utf-8"), "x", "EX") == 1


@pytest.mark.parametrize("body, message", [
    ("[1]", "^expected a JSON object like EX, got list$"),
    ('"x"', "^expected a JSON object like EX, got str$"),
    ('{"b": 1, "a": 2}', r"^expected a JSON object like EX, got an object with keys \['a', 'b'\]$"),
    ('{"x": 1, "y": 2}', r"^expected the request to have only 'x', got unknown key\(s\) 'y'$"),
    ("", "^expected a JSON document, got an empty body$"),
])
def test_json_field_refuses_other_documents(body, message):
    with refused(message):
        forms.json_field(request(body), "x", "EX")


@pytest.mark.parametrize("content_type, got", [("text/plain", "text/plain"), (None, "no Content-Type")])
def test_json_field_wants_json(content_type, got):
    with pytest.raises(UnsupportedMediaType, match=f"expected Content-Type application/json, e.g. EX; got {got}$"):
        forms.json_field(request('{"x": 1}', content_type), "x", "EX")


def test_digit_batch_reads_each_media_type():
    spec, digit = get_model("mnist-mlp"), np.zeros((28, 28), dtype=np.uint8)
    digit[6:22, 12:16] = 255  # a white "1" on black, as MNIST has it
    expected = digit[None, None] / np.float32(255)
    for mimetype in ("image/png", "image/jpeg"):
        body = encoded(digit, "JPEG", quality=100) if mimetype == "image/jpeg" else encoded(digit)
        sent = request(body, mimetype)
        batch, batched = forms.digit_batch(sent, spec, LIMITS)
        assert batched is False and batch.shape == (1, 1, 28, 28)
        assert sent.get_data() == b""  # read once and not kept
        np.testing.assert_allclose(batch, expected, atol=0.05)
    upload = request({"image": (io.BytesIO(encoded(digit)), "d.png")}, None)
    batch, batched = forms.digit_batch(upload, spec, LIMITS)
    assert batched is False
    np.testing.assert_array_equal(batch, expected)
    batch, batched = forms.digit_batch(request(json.dumps({"pixels": [digit.tolist()] * 2})), spec, LIMITS)
    assert batched is True
    np.testing.assert_array_equal(batch, np.concatenate([expected] * 2))
    batch, batched = forms.digit_batch(request(json.dumps({"pixels": digit.tolist()})), spec, LIMITS)
    assert batched is False and batch.shape == (1, 1, 28, 28)


def test_digit_batch_refuses_the_unreadable_and_the_too_many():
    spec = get_model("mnist-mlp")
    with refused(r"^expected a multipart file field \(e.g. curl -F image=@digit.png\), got no file$"):
        forms.digit_batch(request({"text": "hello"}, "multipart/form-data"), spec, LIMITS)
    with pytest.raises(UnsupportedMediaType, match="^415 Unsupported Media Type: expected image/png, image/jpeg, "
                       "multipart/form-data or application/json, got text/csv$"):
        forms.digit_batch(request("1,2", "text/csv"), spec, LIMITS)
    with refused("^expected a batch of at most 4 items, got 5$"):
        forms.digit_batch(request(json.dumps({"pixels": [[0] * 784] * 5})), spec, LIMITS)
    with refused(r"^expected an image of at most 4096 pixels, got 65x64 = 4160$"):
        forms.digit_batch(request(encoded(np.zeros((64, 65), dtype=np.uint8)), "image/png"), spec, LIMITS)
    with refused(r"^expected an image of at most 4096 pixels, got 64x65 = 4160$"):
        upload = request({"image": (io.BytesIO(encoded(np.zeros((65, 64), np.uint8))), "d.png")}, None)
        forms.digit_batch(upload, spec, LIMITS)


def test_value_examples_say_the_features():
    assert forms.value_example(get_model("linear-regression")) == '{"x": 3.5} or {"x": [1, 2, 3]}'
    assert forms.value_example(get_model("tiny-fnn")) == '{"x": [2 numbers]} or {"x": [[2 numbers], ...]}'


def test_value_batch_and_answers(regression):
    spec = regression.spec
    batch, batched = forms.value_batch(request('{"x": 3}'), spec, LIMITS)
    assert batched is False and batch.tolist() == [[3.0]]
    batch, batched = forms.value_batch(request('{"x": [1, 2, 3, 4]}'), spec, LIMITS)
    assert batched is True and batch.tolist() == [[1.0], [2.0], [3.0], [4.0]]
    with refused("^expected a batch of at most 4 items, got 5$"):
        forms.value_batch(request('{"x": [1, 2, 3, 4, 5]}'), spec, LIMITS)
    with refused(r"^expected a JSON object like \{\"x\": 3.5\} or \{\"x\": \[1, 2, 3\]\}, got an object with keys"):
        forms.value_batch(request('{"y": 3}'), spec, LIMITS)
    values = regression.run(np.array([[1.0], [2.0]], dtype=np.float32)).reshape(-1)
    assert forms.value_answer(regression, np.array([[1.0], [2.0]], np.float32), True) == {
        "y": pytest.approx(values.tolist(), rel=1e-6)}
    assert forms.value_answer(regression, np.array([[2.0]], np.float32), False) == {
        "y": pytest.approx(float(values[1]), rel=1e-6)}


def test_digit_answers(mlp):
    batch = np.zeros((2, 1, 28, 28), dtype=np.float32)
    batch[1, 0, 6:22, 12:16] = 1.0
    predictions = zoo.classify_digits(mlp, batch)
    assert forms.digit_answer(mlp, batch, True) == {"predictions": predictions}
    assert forms.digit_answer(mlp, batch[1:], False) == predictions[1]


def test_forms_of_each_input_form():
    assert set(forms.FORMS) == set(InputForm)
    digits, values = forms.FORMS[InputForm.DIGITS], forms.FORMS[InputForm.VALUES]
    assert (digits.read, digits.answer) == (forms.digit_batch, forms.digit_answer)
    assert (values.read, values.answer) == (forms.value_batch, forms.value_answer)
    assert digits.media == ("application/json", "image/png", "image/jpeg", "multipart/form-data")
    assert values.media == ("application/json",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        digits.read = forms.value_batch  # type: ignore[misc]
