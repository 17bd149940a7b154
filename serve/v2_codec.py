"""The Open Inference Protocol v2 codec, protocol-neutral: a v2 infer request (a JSON document, plus binary tensor
bytes) decoded and checked against the served model's TensorSpec into an input batch, run, and the outputs encoded.

No Flask and no HTTP here: the HTTP routes (serve/v2.py) and a gRPC front end call the same functions, so a request
is checked the same way whichever transport brought it. Data types come from the spec's TensorSpec.dtype.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from importlib.metadata import version as package_version
from typing import Any

import numpy as np

from zoo.catalog import ModelDescription
from zoo.core.errors import InvalidInputError
from zoo.core.spec import TensorSpec
from zoo.exports.runtimes import Runtime
from zoo.inputs.imaging import numeric_array
from zoo.serve.checks import RequestLimits, check_batch, check_keys, field, interface, json_type, shown

V2_HEADER_LENGTH = "Inference-Header-Content-Length"
# model_name and model_version: KServe's own client (InferRequest.to_rest) sends them in every body.
V2_REQUEST_KEYS = {"id", "model_name", "model_version", "parameters", "inputs", "outputs"}
V2_TENSOR_KEYS = {"name", "shape", "datatype", "data", "parameters"}
V2_OUTPUT_KEYS = {"name", "parameters"}
MAX_DIMENSIONS = 8
SERVER_EXTENSIONS = ["binary_tensor_data", "statistics"]  # statistics: serve/statistics.py

# A byte count in a header: ASCII digits, short enough that int() is cheap (str.isdigit takes "²" and "١").
_BYTE_COUNT = re.compile(r"0|[1-9][0-9]{0,17}")


def v2_datatype(tensor: TensorSpec) -> str:
    """The v2 protocol's datatype of `tensor` (FP32 for float32): TensorSpec.datatype."""
    return tensor.datatype


def wire_dtype(tensor: TensorSpec) -> np.dtype[Any]:
    """The numpy dtype of `tensor`'s binary data on the wire: its TensorSpec dtype, little-endian."""
    return np.dtype(tensor.dtype).newbyteorder("<")


def v2_shape(shape: tuple[Any, ...]) -> list[int]:
    """A TensorSpec shape in v2 form: the batch dimension "N" becomes -1."""
    return [-1 if dim == "N" else int(dim) for dim in shape]


def tensor_metadata(tensor: TensorSpec) -> dict[str, Any]:
    """A tensor as v2 model metadata lists it: name, datatype and shape (-1 for the batch)."""
    return {"name": tensor.name, "datatype": v2_datatype(tensor), "shape": v2_shape(tensor.shape)}


def server_metadata() -> dict[str, Any]:
    """The v2 server metadata: name, version and the protocol extensions served."""
    return {"name": "zoo", "version": package_version("zoo"), "extensions": SERVER_EXTENSIONS}


def model_metadata(described: ModelDescription, runtime: Runtime) -> dict[str, Any]:
    """The v2 model metadata of `runtime` (one served version of the model `described` with every served version)."""
    # The description's tensors are the spec's: None only for a model that runs on no inputs, which interface()
    # refuses (no such model is served).
    tensors = interface(runtime.spec)
    inputs, outputs = described.input or tensors.input, described.output or tensors.output
    return {
        "name": described.name,
        "versions": [str(v) for v in described.version_numbers],
        "platform": runtime.platform,
        "inputs": [tensor_metadata(inputs)],
        "outputs": [tensor_metadata(outputs)],
        # The platform is the same for every ONNX file; which one answers (float32, int8, float16) is said here.
        "parameters": {"backend": runtime.backend, "file": runtime.file or runtime.manifest["weights"]["file"]},
    }


@dataclass(frozen=True)
class InferRequest:
    """A decoded v2 infer request: the model's input batch, the request's id, and whether the output is wanted
    as binary data (Triton's binary tensor extension)."""

    batch: np.ndarray
    id: str | None = None
    binary_output: bool = False


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """An HTTP v2 body as (JSON header, binary tensor bytes), split at the Inference-Header-Content-Length value
    (None: the whole body is JSON)."""
    if header_length is None:
        return body, b""
    if not _BYTE_COUNT.fullmatch(header_length) or int(header_length) > len(body):
        raise InvalidInputError(
            f"{V2_HEADER_LENGTH} must be a byte count within the {len(body)}-byte body, got {header_length[:40]!r}"
        )
    return body[: int(header_length)], body[int(header_length) :]


def decode_request(document: Any, binary: bytes, runtime: Runtime, limits: RequestLimits) -> InferRequest:
    """A v2 infer request document (parsed JSON) and the binary bytes after it, as `runtime`'s input batch.

    Every field is checked for its type before it is used, so a type-confused request is an InvalidInputError,
    never a crash; `model_name`, when sent, must be the runtime's model. Runtime.run checks shape and dtype again.
    """
    tensors = interface(runtime.spec)
    spec = tensors.input
    example = (
        f'{{"inputs": [{{"name": "{spec.name}", "shape": {v2_shape(spec.shape)}, '
        f'"datatype": "{v2_datatype(spec)}", "data": [...]}}]}}'
    )
    inputs = document.get("inputs") if isinstance(document, dict) else None
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidInputError(f"expected a v2 infer request with one input, like {example}")
    check_keys(document, V2_REQUEST_KEYS, "a v2 infer request")
    request_id = field(document, "id", str, "the request's", "a string")
    field(document, "model_version", str, "the request's", "a string")
    check_model_name(field(document, "model_name", str, "the request's", "a string"), runtime.name)
    _parameters(document, "the request's")
    field(document, "outputs", list, "the request's", 'an array of {"name": ...} objects')
    batch = _json_input(inputs[0], binary, spec, limits)
    binary_output = requested_binary(document, tensors.output.name)
    return InferRequest(batch, request_id, binary_output)


def check_model_name(sent: str | None, served: str) -> None:
    """A request's own model name, when it sends one, must be the model it was routed to."""
    if sent not in (None, served):
        raise InvalidInputError(f"expected 'model_name' {served!r}, the model of this route, got {shown(sent)}")


def _json_input(tensor: dict[str, Any], binary: bytes, spec: TensorSpec, limits: RequestLimits) -> np.ndarray:
    """A v2 JSON input tensor (its values in `data`, or `binary_data_size` bytes of `binary`) as a batch."""
    check_keys(tensor, V2_TENSOR_KEYS, f"input {spec.name!r}")
    shape = check_tensor(spec, tensor.get("name"), tensor.get("datatype"), tensor.get("shape"))
    binary_size = _parameters(tensor, f"input {spec.name!r}'s").get("binary_data_size")
    if binary_size is not None:
        if (not isinstance(binary_size, int) or isinstance(binary_size, bool) or binary_size != len(binary)
                or binary_size % wire_dtype(spec).itemsize):
            raise InvalidInputError(f"expected {shown(binary_size)} bytes of {v2_datatype(spec)} binary data after "
                                    f"the JSON header, got {len(binary)}")
        return tensor_values(spec, shape, limits, raw=binary)
    if "data" not in tensor:
        raise InvalidInputError(f"expected input {spec.name!r} to carry 'data' (or binary_data_size), got neither")
    if not isinstance(tensor["data"], list):  # the protocol's data is an array, even of one value
        raise InvalidInputError(f"expected input {spec.name!r} 'data' to be an array, got {json_type(tensor['data'])}")
    return tensor_values(spec, shape, limits, data=tensor["data"])


def decode_input(
    spec: TensorSpec,
    name: Any,
    datatype: Any,
    shape: Any,
    limits: RequestLimits,
    *,
    data: Any = None,
    raw: bytes | None = None,
) -> np.ndarray:
    """One v2 input tensor as the model's batch, checked against `spec` and `limits`: its name, datatype and shape,
    and its values, either `raw` (little-endian bytes, as binary tensors and gRPC's raw_input_contents carry them)
    or `data` (numbers, flat or nested, as JSON and gRPC's typed contents carry them)."""
    return tensor_values(spec, check_tensor(spec, name, datatype, shape), limits, data=data, raw=raw)


def check_tensor(spec: TensorSpec, name: Any, datatype: Any, shape: Any) -> list[int]:
    """An input tensor's name, datatype and shape checked against `spec`; returns the shape."""
    if name != spec.name:
        raise InvalidInputError(f"expected input named {spec.name!r}, got {shown(name)}")
    if datatype != v2_datatype(spec):
        raise InvalidInputError(
            f"expected input {spec.name!r} with datatype {v2_datatype(spec)}, got {shown(datatype)}"
        )
    return tensor_shape(shape, spec.name)


def tensor_values(
    spec: TensorSpec, shape: list[int], limits: RequestLimits, *, data: Any = None, raw: bytes | None = None
) -> np.ndarray:
    """An input's values (`raw` bytes, else `data` numbers) as a batch of `shape`, finite, within `limits`."""
    if raw is not None:
        dtype = wire_dtype(spec)
        if len(raw) % dtype.itemsize:
            raise InvalidInputError(f"expected input {spec.name!r} as whole {v2_datatype(spec)} values of "
                                    f"{dtype.itemsize} bytes, got {len(raw)} bytes")
        array = np.frombuffer(raw, dtype=dtype).astype(spec.dtype)  # a copy: torch wants a writable buffer
        if not np.isfinite(array).all():
            raise InvalidInputError(f"expected finite values in input {spec.name!r}, got NaN or infinity")
    else:
        array = numeric_array(data, f"input {spec.name!r} data").reshape(-1)
    count = math.prod(shape)  # Python integers: a numpy product of huge dimensions could wrap to 0
    if array.size != count:
        raise InvalidInputError(
            f"expected input {spec.name!r} of shape {shape} to carry {count} values, got {array.size}"
        )
    batch = array.reshape(shape)
    check_batch(batch, True, limits)
    return batch


def tensor_shape(shape: Any, name: str) -> list[int]:
    """A v2 tensor's `shape` checked: a list of 1 to MAX_DIMENSIONS non-negative integers (the first is the
    batch)."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInputError(
            f"expected input {name!r} 'shape' as a list of non-negative integers, got {shown(shape)}"
        )
    if not 1 <= len(shape) <= MAX_DIMENSIONS:
        raise InvalidInputError(
            f"expected input {name!r} 'shape' of 1 to {MAX_DIMENSIONS} dimensions (the first is the batch), "
            f"got {len(shape)}"
        )
    return shape


def _parameters(document: dict[str, Any], what: str) -> dict[str, Any]:
    parameters: dict[str, Any] = field(document, "parameters", dict, what, "an object") or {}
    return parameters


def requested_binary(document: dict[str, Any], output_name: str) -> bool:
    """Whether the request asked for `output_name` as binary data; a request for an unknown output is refused."""
    requested = document.get("outputs")
    default = field(
        _parameters(document, "the request's"), "binary_data_output", bool, "the request's parameter", "true or false"
    )
    if not requested:
        return bool(default)
    check_output_names([o.get("name") if isinstance(o, dict) else None for o in requested], output_name, requested)
    for output in requested:
        check_keys(output, V2_OUTPUT_KEYS, f"output {output_name!r}")
    chosen = field(_parameters(requested[0], f"output {output_name!r}'s"), "binary_data", bool,
                   f"output {output_name!r}'s parameter", "true or false")
    return bool(default) if chosen is None else bool(chosen)


def check_output_names(names: list[Any], output_name: str, requested: Any = None) -> None:
    """Every requested output must be the model's one output, `output_name`."""
    if any(name != output_name for name in names):
        came = names if requested is None else requested
        raise InvalidInputError(f"expected 'outputs' to request only {output_name!r}, got {shown(came)}")


def run(runtime: Runtime, batch: np.ndarray) -> np.ndarray:
    """`runtime`'s output for `batch`, contiguous in its TensorSpec dtype, little-endian as the wire carries it."""
    return np.ascontiguousarray(runtime.run(batch), dtype=wire_dtype(interface(runtime.spec).output))


def encode_response(
    name: str, runtime: Runtime, request_id: str | None, result: np.ndarray, binary: bool
) -> tuple[dict[str, Any], bytes]:
    """The v2 infer response document for `result`, and the output's bytes when `binary` (the document then says
    their size in the output's binary_data_size; else its values are in `data` and the bytes are empty)."""
    tensor = interface(runtime.spec).output
    output: dict[str, Any] = {"name": tensor.name, "datatype": v2_datatype(tensor), "shape": list(result.shape)}
    answer: dict[str, Any] = {"model_name": name, "model_version": str(runtime.version), "outputs": [output]}
    if request_id is not None:
        answer["id"] = request_id
    if not binary:
        output["data"] = result.reshape(-1).tolist()
        return answer, b""
    output["parameters"] = {"binary_data_size": result.nbytes}
    return answer, result.tobytes()
