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
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import numpy as np

from zoo.core.errors import InvalidInputError, NotExportableError, ZooError
from zoo.core.spec import Interface
from zoo.exports.runtimes import Runtime
from zoo.serve.errors import public
from zoo.serve.grpc_protocol import grpc_predict_v2_pb2 as pb
from zoo.serve.metrics import UNSERVED, access_log, escaped, instruments, record_inference
from zoo.serve.payloads import MAX_DIMENSIONS, v2_datatype, v2_shape
from zoo.serve.statistics import Durations, model_statistics, record_failure, record_success

if TYPE_CHECKING:
    from flask import Flask

    from zoo.serve.asgi import BufferedWSGI
    from zoo.serve.models import ServedModels

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
            log.error("%s: %s", type(error).__name__, error)
            return grpc.StatusCode.INTERNAL, f"server fault: {public(str(error))}"
        code = grpc.StatusCode.NOT_FOUND if isinstance(error, LookupError) else grpc.StatusCode.INVALID_ARGUMENT
        return code, public(str(error))
    log.exception("unhandled error in a gRPC request", exc_info=error)
    return grpc.StatusCode.INTERNAL, f"internal error ({type(error).__name__}); the server logged the details"


def _version(text: str) -> str | None:
    """A request's version field: empty means the server's choice (the latest served)."""
    return text or None


def tensors(runtime: Runtime) -> Interface:
    """The served model's tensors (a runtime is only ever opened for a model that runs on inputs)."""
    interface = runtime.spec.interface
    if interface is None:
        raise NotExportableError(f"{runtime.name} runs on no inputs")
    return interface


def decode_infer(request: Any, runtime: Runtime, max_batch: int) -> np.ndarray:
    """A ModelInferRequest's one input as the model's batch, checked as /v2 over HTTP checks a JSON request:
    its name, datatype and shape, the number of values the shape needs, finite values, the batch limit.

    The values come from `raw_input_contents` (little-endian FP32, as tritonclient.grpc sends them) or from the
    typed `contents.fp32_contents`; never both, and no other typed field.
    """
    expected, produced = tensors(runtime).input, tensors(runtime).output
    datatype = v2_datatype(expected)
    if len(request.inputs) != 1:
        raise InvalidInputError(f"expected a v2 infer request with one input, {expected.name!r} "
                                f"{datatype} {v2_shape(expected.shape)}, got {len(request.inputs)} inputs")
    if request.model_name != runtime.name:  # the route's model, as HTTP's body check
        raise InvalidInputError(f"expected 'model_name' {runtime.name!r}, got {request.model_name[:80]!r}")
    tensor = request.inputs[0]
    if tensor.name != expected.name:
        raise InvalidInputError(f"expected input named {expected.name!r}, got {tensor.name[:80]!r}")
    if tensor.datatype != datatype:
        raise InvalidInputError(f"expected input {expected.name!r} with datatype {datatype}, "
                                f"got {tensor.datatype[:40]!r}")
    shape = list(tensor.shape)
    if any(dim < 0 for dim in shape):
        raise InvalidInputError(f"expected input {expected.name!r} 'shape' as a list of non-negative integers, "
                                f"got {shape[:MAX_DIMENSIONS + 1]}")
    if len(shape) > MAX_DIMENSIONS:
        raise InvalidInputError(f"expected input {expected.name!r} 'shape' of at most {MAX_DIMENSIONS} "
                                f"dimensions, got {len(shape)}")
    for output in request.outputs:
        if output.name != produced.name:
            raise InvalidInputError(f"expected 'outputs' to request only {produced.name!r}, "
                                    f"got {output.name[:80]!r}")
    typed = [field.name for field, _ in tensor.contents.ListFields()]
    count = math.prod(shape)  # Python integers: a numpy product of huge dimensions could wrap to 0
    if request.raw_input_contents:
        if len(request.raw_input_contents) != 1 or typed:
            raise InvalidInputError(f"expected input {expected.name!r} in one raw_input_contents entry and no "
                                    f"typed contents, got {len(request.raw_input_contents)} raw entries"
                                    f"{' and ' + ', '.join(typed) if typed else ''}")
        raw = request.raw_input_contents[0]
        if len(raw) != count * 4:
            raise InvalidInputError(f"expected {count * 4} bytes of FP32 raw_input_contents for input "
                                    f"{expected.name!r} of shape {shape}, got {len(raw)}")
        array = np.frombuffer(raw, dtype="<f4").copy()  # torch wants a writable buffer
    elif typed == ["fp32_contents"]:
        array = np.asarray(tensor.contents.fp32_contents, dtype=np.float32)
        if array.size != count:
            raise InvalidInputError(f"expected the {count} values input {expected.name!r} of shape {shape} "
                                    f"needs, got {array.size} in fp32_contents")
    elif typed:
        raise InvalidInputError(f"expected input {expected.name!r} {datatype} values in fp32_contents or "
                                f"raw_input_contents, got {', '.join(typed)}")
    else:
        raise InvalidInputError(f"expected input {expected.name!r} to carry contents (fp32_contents or "
                                f"raw_input_contents), got neither")
    if not np.isfinite(array).all():
        raise InvalidInputError(f"expected finite values in input {expected.name!r}, got NaN or infinity")
    batch = array.reshape(shape)
    if batch.ndim and len(batch) > max_batch:
        raise InvalidInputError(f"expected a batch of at most {max_batch} items, got {len(batch)}")
    return batch


class InferenceService:
    """The RPCs, each a coroutine run on the worker's event loop."""

    def __init__(self, app: Flask, front: BufferedWSGI | None = None) -> None:
        self.app = app
        self.served: ServedModels = app.extensions["zoo.models"]
        self.front = front
        self.max_batch = int(app.config["MAX_BATCH"])
        self.access_log = app.config["ACCESS_LOG"]
        from importlib.metadata import version

        self.version = version("zoo")

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
        return pb.ServerMetadataResponse(name="zoo", version=self.version,
                                         extensions=["binary_tensor_data", "statistics"])

    def model_metadata(self, request: Any) -> Any:
        self._check_ready()
        runtime = self.served.get(request.name, _version(request.version))
        spec = tensors(runtime)

        def tensor(t: Any) -> Any:
            return pb.ModelMetadataResponse.TensorMetadata(name=t.name, datatype=v2_datatype(t),
                                                           shape=v2_shape(t.shape))

        return pb.ModelMetadataResponse(
            name=request.name, versions=[str(v) for v in self.served.versions(request.name)],
            platform=runtime.platform, inputs=[tensor(spec.input)], outputs=[tensor(spec.output)])

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
            batch = decode_infer(request, runtime, self.max_batch)
            decoded = time.perf_counter()
            result = np.ascontiguousarray(runtime.run(batch), dtype="<f4")
            ran = time.perf_counter()
            record_inference(runtime, ran - decoded)
            spec = tensors(runtime).output
            output = pb.ModelInferResponse.InferOutputTensor(name=spec.name, datatype=v2_datatype(spec),
                                                             shape=result.shape)
            answer = pb.ModelInferResponse(model_name=runtime.name, model_version=str(runtime.version),
                                           id=request.id, outputs=[output], raw_output_contents=[result.tobytes()])
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
            size = sum(len(raw) for raw in request.raw_input_contents)
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
        """Count and time the RPC in /metrics (status: the code's name) and write its access-log line."""
        seconds = time.perf_counter() - started
        if model and model not in self.service.served.runtimes:
            model = UNSERVED
        instruments().requests.labels(model, version, route, code.name).inc()
        instruments().latency.labels(model).observe(seconds)
        log_format = self.service.access_log
        if not log_format:
            return
        peer = context.peer()
        if log_format == "json":
            import json

            access_log.info(json.dumps({"time": time.time(), "remote": peer, "method": "GRPC", "path": route,
                                        "status": code.name, "model": model, "version": version, "bytes": size,
                                        "latency_ms": round(seconds * 1000, 3)}))
        else:
            access_log.info('%s "GRPC %s" %s %s %.2fms', escaped(peer), route, code.name, size, seconds * 1000)

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
