"""The peer baseline for benchmarks/serve_load.py: KServe's own Python model server (kserve.ModelServer, one
process, uvicorn) serving a zoo `model.onnx` through ONNX Runtime on the Open Inference Protocol v2.

Runs in an environment with kserve installed (it is not a zoo dependency):
    python3 -m venv /tmp/kserve && /tmp/kserve/bin/pip install kserve onnxruntime numpy
    /tmp/kserve/bin/python benchmarks/kserve_baseline.py --model-file weights/mnist-mlp/1/model.onnx \
        --name mnist-mlp --port 8080 [--grpc-port 8081]

With --grpc-port it serves KServe's own gRPC endpoint (grpc_predict_v2.proto, its grpc.aio server) beside HTTP,
in the same process, as benchmarks/grpc_load.py measures it.
"""

from __future__ import annotations

import argparse

import kserve
import numpy as np
import onnxruntime
from kserve import InferOutput, InferRequest, InferResponse


class OnnxModel(kserve.Model):
    """One ONNX file answering v2 infer requests: its first input in, its first output out."""

    def __init__(self, name: str, path: str) -> None:
        super().__init__(name)
        self.path = path
        self.load()

    def load(self) -> bool:
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # as the zoo's server: one thread per request, requests side by side
        self.session = onnxruntime.InferenceSession(self.path, options, providers=["CPUExecutionProvider"])
        self.input, self.output = self.session.get_inputs()[0].name, self.session.get_outputs()[0].name
        self.ready = True
        return self.ready

    def predict(self, payload: InferRequest, headers=None, response_headers=None) -> InferResponse:
        batch = payload.inputs[0].as_numpy().astype(np.float32, copy=False)
        result = self.session.run(None, {self.input: batch})[0]
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=[InferOutput(self.output, list(result.shape), "FP32", result)],
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-file", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--grpc-port", type=int, default=0, help="also serve KServe's gRPC endpoint here (0: none)")
    args = parser.parse_args()
    kserve.ModelServer(
        http_port=args.port, grpc_port=args.grpc_port or args.port + 1, enable_grpc=bool(args.grpc_port), workers=1,
        enable_latency_logging=False,
    ).start([OnnxModel(args.name, args.model_file)])


if __name__ == "__main__":
    main()
