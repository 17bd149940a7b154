"""The Open Inference Protocol over gRPC: `inference.GRPCInferenceService` (grpc_predict_v2.proto, with Triton's
ModelStatistics) served from each worker beside HTTP.

Every granian worker starts a grpc.aio server on its own event loop (the ASGI front's lifespan), bound with
SO_REUSEPORT to the one gRPC port as granian's workers are to the HTTP port, so the kernel spreads connections
over the workers and a killed worker takes only its own connections' requests with it. A request is answered
by the same ServedModels, version policy, checks and limits as /v2 over HTTP, in the same bounded queue of the
worker, and is counted in /metrics, the access log and the statistics.

Errors map to gRPC status codes: INVALID_ARGUMENT for a bad tensor or request, NOT_FOUND for an unknown model or
version, RESOURCE_EXHAUSTED for a message over the body limit (gRPC's own max_receive_message_length),
UNAVAILABLE while the server is not ready or the worker's queue is full, INTERNAL for a fault on the server's side.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from zoo.core.errors import InvalidInputError, ZooError
from zoo.exports.runtimes import Runtime
from zoo.serve.checks import RequestLimits, interface
from zoo.serve.context import LIMITS_KEY, MODELS_KEY
from zoo.serve.errors import SPELLING, shown
from zoo.serve.grpc_protocol import grpc_predict_v2_pb2 as pb
from zoo.serve.metrics import observe_request, record_inference
from zoo.serve.statistics import Durations, model_statistics, record_failure, record_success
from zoo.serve.v2_codec import (
    check_model_name,
    check_output_names,
    check_tensor,
    encode_response,
    model_metadata,
    run,
    server_metadata,
    tensor_values,
    v2_datatype,
    v2_shape,
)

if TYPE_CHECKING:
    from flask import Flask

    from zoo.serve.front import BufferedWSGI
    from zoo.serve.repository import ServedModels

log = logging.getLogger("zoo.serve")
SERVICE = pb.SERVICE.full_name  # inference.GRPCInferenceService
LONG_MESSAGE = 64 * 1024  # bytes of tensor data: as the HTTP front, a request this large runs off the loop


class Refusal(Exception):
    """A request refused with a gRPC status code and a one-line message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The gRPC status code and client-facing message of an error, as serve/errors.py maps them to HTTP."""
    if isinstance(error, Refusal):
        return error.code, str(error)
    if isinstance(error, ZooError):
        if not error.caller_error:
            log.error("%s: %s", type(error).__name__, error.spelled(SPELLING))
            return grpc.StatusCode.INTERNAL, f"server fault: {shown(error)}"
        code = grpc.StatusCode.NOT_FOUND if isinstance(error, LookupError) else grpc.StatusCode.INVALID_ARGUMENT
        return code, shown(error)
    log.exception("unhandled error in a gRPC request", exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); the server logged the details"


def _version(text: str) -> str | None:
    """A request's version field: empty means the server's choice (the latest served)."""
    return text or None


# The typed contents field that carries the values of each dtype a TensorSpec declares (grpc_predict_v2.proto's
# InferTensorContents).
CONTENTS = {"float32": "fp32_contents"}


def decode_infer(request: Any, runtime: Runtime, limits: RequestLimits) -> np.ndarray:
    """A ModelInferRequest's one input as the model's batch, through the v2 codec that decodes HTTP's requests:
    the same checks of its name, datatype and shape, its number of values, finite values and the batch limit.

    The values come from `raw_input_contents` (little-endian, as tritonclient.grpc sends them) or from the typed
    contents of the input's datatype (`fp32_contents`); never both, and no other typed field.
    """
    tensors = interface(runtime.spec)
    spec = tensors.input
    if len(request.inputs) != 1:
        raise InvalidInputError(f"expected a v2 infer request with one input, {spec.name!r} {v2_datatype(spec)} "
                                f"{v2_shape(spec.shape)}, got {len(request.inputs)} inputs")
    check_model_name(request.model_name, runtime.name)
    check_output_names([output.name for output in request.outputs], tensors.output.name)
    tensor = request.inputs[0]
    shape = check_tensor(spec, tensor.name, tensor.datatype, list(tensor.shape))
    typed = [field.name for field, _ in tensor.contents.ListFields()]
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1 or typed:
            raise InvalidInputError(f"expected input {spec.name!r} in one raw_input_contents entry and no typed "
                                    f"contents, got {len(request.raw_input_contents)} raw entries"
                                    f"{' and ' + ', '.join(typed) if typed else ''}")
        return tensor_values(spec, shape, limits, raw=request.raw_input_contents[0])
    wanted = CONTENTS[spec.dtype]
    if typed != [wanted]:
        raise InvalidInputError(f"expected input {spec.name!r} {v2_datatype(spec)} values in {wanted} or "
                                f"raw_input_contents, got {', '.join(typed) or 'neither'}")
    return tensor_values(spec, shape, limits, data=list(getattr(tensor.contents, wanted)))


class InferenceService:
    """The RPCs' answers, called by GrpcFront's handlers on the worker's event loop (or its long-request thread)."""

    def __init__(self, app: Flask, front: BufferedWSGI | None = None) -> None:
        self.app = app
        self.served: ServedModels = app.extensions[MODELS_KEY]
        self.limits: RequestLimits = app.extensions[LIMITS_KEY]
        self.front = front
        self.access_log = app.config["ACCESS_LOG"]

    # -- health and metadata

    def server_live(self, request: Any) -> Any:
        return pb.ServerLiveResponse(live=True)

    def server_ready(self, request: Any) -> Any:
        return pb.ServerReadyResponse(ready=self.served.ready)

    def model_ready(self, request: Any) -> Any:
        if request.version and self.served.is_failed(request.name, request.version):
            return pb.ModelReadyResponse(ready=False)
        self.served.get(request.name, _version(request.version))
        return pb.ModelReadyResponse(ready=self.served.ready)

    def server_metadata(self, request: Any) -> Any:
        return pb.ServerMetadataResponse(**server_metadata())

    def model_metadata(self, request: Any) -> Any:
        self._check_ready()
        runtime = self.served.get(request.name, _version(request.version))
        document = model_metadata(self.served.description(request.name), runtime)
        document.pop("parameters")  # the proto's ModelMetadataResponse has no parameters
        return pb.ModelMetadataResponse(**document)

    def model_statistics(self, request: Any) -> Any:
        stats = model_statistics(self.served, request.name or None, _version(request.version))
        return pb.ModelStatisticsResponse(model_stats=[pb.ModelStatistics(**stat) for stat in stats])

    # -- inference

    def _check_ready(self) -> None:
        if not self.served.ready:
            raise Refusal(grpc.StatusCode.UNAVAILABLE, "the server is not ready: no model version is served yet")

    def model_infer(self, request: Any, arrived: float) -> tuple[Any, Runtime]:
        """The answer to one ModelInferRequest; statistics recorded for a request that found its version."""
        self._check_ready()
        runtime = self.served.get(request.model_name, _version(request.model_version))
        started = time.perf_counter()
        try:
            batch = decode_infer(request, runtime, self.limits)
            decoded = time.perf_counter()
            result = run(runtime, batch)
            ran = time.perf_counter()
            record_inference(runtime, ran - decoded)
            document, data = encode_response(runtime.name, runtime, request.id or None, result, binary=True)
            (output,) = document["outputs"]
            output.pop("parameters")  # binary_data_size: raw_output_contents says its own length
            answer = pb.ModelInferResponse(model_name=document["model_name"],
                                           model_version=document["model_version"], id=request.id,
                                           outputs=[output], raw_output_contents=[data])
        except Exception:
            record_failure(runtime.name, str(runtime.version), time.perf_counter() - arrived)
            raise
        done = time.perf_counter()
        record_success(runtime.name, str(runtime.version), len(batch), done - arrived,
                       Durations(started - arrived, decoded - started, ran - decoded, done - ran))
        return answer, runtime


Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Any]]


class GrpcFront:
    """InferenceService behind grpc.aio: error mapping, the worker's queue bound, metrics and the access log."""

    def __init__(self, app: Flask, front: BufferedWSGI | None = None) -> None:
        self.service = InferenceService(app, front)
        self.front = front
        self.server: grpc.aio.Server | None = None

    def handlers(self) -> grpc.GenericRpcHandler:
        service = self.service
        simple: dict[str, Callable[[Any], Any]] = {
            "ServerLive": service.server_live, "ServerReady": service.server_ready,
            "ModelReady": service.model_ready, "ServerMetadata": service.server_metadata,
            "ModelMetadata": service.model_metadata, "ModelStatistics": service.model_statistics,
        }
        methods = {method.name: method for method in pb.SERVICE.methods}
        table = {}
        for name, method in methods.items():
            handler = self._infer if name == "ModelInfer" else self._simple(name, simple[name])
            table[name] = grpc.unary_unary_rpc_method_handler(
                handler,
                request_deserializer=pb._message(method.input_type.name).FromString,
                response_serializer=pb._message(method.output_type.name).SerializeToString,
            )
        return grpc.method_handlers_generic_handler(SERVICE, table)

    def _simple(self, name: str, call: Callable[[Any], Any]) -> Handler:
        route = f"/{SERVICE}/{name}"

        async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
            started = time.perf_counter()
            model = getattr(request, "name", "")
            try:
                answer = call(request)
            except Exception as error:  # noqa: BLE001 (every error becomes a status)
                code, message = status_of(error)
                self._observe(context, route, model, "", code, started, 0)
                await context.abort(code, message)
            self._observe(context, route, model, getattr(request, "version", ""), grpc.StatusCode.OK, started, 0)
            return answer

        return handle

    async def _infer(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        route = f"/{SERVICE}/ModelInfer"
        arrived = time.perf_counter()
        front = self.front
        version = ""
        try:
            if front is not None and front._full():
                raise Refusal(grpc.StatusCode.UNAVAILABLE, f"this worker has {front.queued} requests waiting, "
                                                           f"its limit; retry after a second")
            size = sum(len(raw) for raw in request.raw_input_contents) + sum(
                4 * len(tensor.contents.fp32_contents) for tensor in request.inputs)
            if front is not None and size > LONG_MESSAGE:
                front.queued += 1
                try:
                    loop = asyncio.get_running_loop()
                    answer, runtime = await loop.run_in_executor(
                        front.long_pool, self.service.model_infer, request, arrived)
                finally:
                    front.queued -= 1
            else:
                answer, runtime = self.service.model_infer(request, arrived)
            version = str(runtime.version)
        except Exception as error:  # noqa: BLE001
            code, message = status_of(error)
            self._observe(context, route, request.model_name, version, code, arrived, 0)
            await context.abort(code, message)
        self._observe(context, route, request.model_name, version, grpc.StatusCode.OK, arrived,
                      len(answer.raw_output_contents[0]))
        return answer

    def _observe(self, context: grpc.aio.ServicerContext, route: str, model: str, version: str,
                 code: grpc.StatusCode, started: float, size: int) -> None:
        """Count and time the RPC in /metrics (status: the code's name) and write its access-log line, as HTTP's."""
        log_format = self.service.access_log
        observe_request(self.service.served, model, version, route, code.name, time.perf_counter() - started,
                        log_format, context.peer() if log_format else "", "GRPC", route, size)

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (SO_REUSEPORT, shared with the other workers) and serve; returns the port bound."""
        limit = int(self.service.app.config["MAX_CONTENT_LENGTH"])
        options = [
            ("grpc.so_reuseport", 1),
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", -1),
        ]
        self.server = grpc.aio.server(options=options)
        self.server.add_generic_rpc_handlers((self.handlers(),))
        address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        bound = self.server.add_insecure_port(address)
        if not bound:
            raise OSError(f"gRPC cannot listen on {address}")
        await self.server.start()
        return bound

    async def stop(self, grace: float = 5) -> None:
        if self.server is not None:
            await self.server.stop(grace)
