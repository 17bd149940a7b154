"""The gRPC floor for benchmarks/grpc_load.py: a grpc.aio server (as zoo's and KServe's are) that answers every
ModelInfer with one fixed ModelInferResponse and runs no zoo code, so what it measures is grpc.aio's own cost and
the loopback's round trip.

    python benchmarks/grpc_floor.py PORT [--processes N]

With --processes N it runs N such servers on the one port (SO_REUSEPORT, as zoo serve's workers share theirs), so
that it can be set beside `zoo serve --workers N`.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import signal
import socket
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


async def serve(port: int, shared: bool) -> None:
    table = {
        "ModelInfer": grpc.unary_unary_rpc_method_handler(
            infer, request_deserializer=pb.ModelInferRequest.FromString,
            response_serializer=pb.ModelInferResponse.SerializeToString),
        "ServerReady": grpc.unary_unary_rpc_method_handler(
            ready, request_deserializer=pb.ServerReadyRequest.FromString,
            response_serializer=pb.ServerReadyResponse.SerializeToString),
    }
    # One process refuses a port in use rather than sharing it; several share theirs, checked free beforehand.
    server = grpc.aio.server(options=[("grpc.so_reuseport", int(shared))])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, table),))
    try:
        server.add_insecure_port(f"127.0.0.1:{port}")
    except RuntimeError:  # grpc's own message points at GRPC_VERBOSITY, not at the port
        raise SystemExit(f"grpc_floor.py: cannot listen on 127.0.0.1:{port}: expected a free port") from None
    await server.start()
    await server.wait_for_termination()


def serve_shared(port: int) -> None:
    asyncio.run(serve(port, shared=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int, help="the loopback port to serve gRPC on")
    parser.add_argument("--processes", type=int, default=1, help="servers sharing the port (default 1)")
    args = parser.parse_args()
    if not 1 <= args.port <= 65535:  # grpc would take 99999 as 34463
        parser.error(f"expected a port of 1-65535, got {args.port}")
    if args.processes < 1:
        parser.error(f"expected --processes of at least 1, got {args.processes}")
    if args.processes == 1:
        asyncio.run(serve(args.port, shared=False))
        return
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", args.port))
        except OSError:
            raise SystemExit(f"grpc_floor.py: cannot listen on 127.0.0.1:{args.port}: expected a free port") from None
    spawn = multiprocessing.get_context("spawn")  # each child starts grpc afresh: grpc does not survive a fork
    children = [spawn.Process(target=serve_shared, args=(args.port,), daemon=True) for _ in range(args.processes)]
    # SIGTERM (how grpc_load.py stops its servers) ends the children too, not just this parent.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    for child in children:
        child.start()
    try:
        for child in children:
            child.join()
    except KeyboardInterrupt:
        pass
    finally:
        for child in children:
            child.terminate()


if __name__ == "__main__":
    main()
