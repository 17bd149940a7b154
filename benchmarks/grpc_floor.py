"""The gRPC floor for benchmarks/grpc_load.py: a grpc.aio server (as zoo's and KServe's are) that answers every
ModelInfer with one fixed ModelInferResponse and runs no zoo code, so what it measures is grpc.aio's own cost and
the loopback's round trip.

    python benchmarks/grpc_floor.py PORT
"""

from __future__ import annotations

import asyncio
import sys
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
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, table),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
