"""The gRPC floor for benchmarks/grpc_load.py: a grpc.aio server (as zoo's and KServe's are) that answers every
ModelInfer with one fixed ModelInferResponse and runs no zoo code, so what it measures is grpc.aio's own cost and
the loopback's round trip.

    python benchmarks/grpc_floor.py PORT
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import grpc

from zoo.serve.grpc_protocol import grpc_predict_v2_pb2 as pb

SERVICE = pb.SERVICE.full_name
ANSWER = pb.ModelInferResponse(
    model_name="mnist-mlp", model_version="1",
    outputs=[pb.ModelInferResponse.InferOutputTensor(name="logits", datatype="FP32", shape=[1, 10])],
    raw_output_contents=[bytes(40)])


async def infer(request: Any, context: grpc.aio.ServicerContext) -> Any:
    return ANSWER


async def ready(request: Any, context: grpc.aio.ServicerContext) -> Any:
    return pb.ServerReadyResponse(ready=True)  # what grpc_load.py waits for


async def serve(port: int) -> None:
    table = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            infer, request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelInferResponse.SerializeToString),
        "ServerReady": grpc.unary_unary_rpc_method_handler(
            ready, request_deserializer=pb.ServerReadyRequest.FromString,
            response_serializer=pb.ServerReadyResponse.SerializeToString),
    }
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])  # a port in use is refused, not shared
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, table),))
    try:
        server.add_insecure_port(f"127.0.0.1:{port}")
    except RuntimeError:  # grpc's own message points at GRPC_VERBOSITY, not at the port
        raise SystemExit(f"grpc_floor.py: cannot listen on 127.0.0.1:{port}: expected a free port") from None
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, help="the loopback port to serve gRPC on")
    port = parser.parse_args().port
    if not 1 <= port <= 65535:  # grpc would take 99999 as 34463
        parser.error(f"expected a port of 1-65535, got {port}")
    asyncio.run(serve(port))
