"""gRPC beside HTTP on the same model.onnx, all in one run on loopback: `zoo serve`'s v2 over HTTP (JSON, one
mnist-mlp image a request), `zoo serve`'s gRPC (binary tensors in raw_input_contents), and KServe's own
ModelServer over gRPC (benchmarks/kserve_baseline.py --grpc-port), at 1, 8 and 32 requests in flight.

Two kinds of client, each used on both protocols so that a row is compared with its own kind:
- **C clients**, which cost the server's two cores little: wrk for HTTP; h2load (apt-get install nghttp2-client)
  for gRPC, sending the very bytes tritonclient.grpc puts on the wire for the request (a gRPC message over
  HTTP/2, one stream per connection at a time), each answer checked once with tritonclient beforehand.
- **Python clients**: tritonclient.grpc (binary tensors) and tritonclient.http (JSON), from 2 processes of
  threads, each thread with a connection of its own, as a Python application would call the server.

    ZOO_DATA_DIR=../shared/data .venv/bin/python benchmarks/grpc_load.py [--seconds 10] [--rounds 2]

kserve must import in the interpreter given by --kserve-python (this one by default: it is a test extra).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from serve_load import free_port, load_wrk  # benchmarks/ is on the path: these scripts run as files

ROOT = Path(__file__).resolve().parent.parent
MODEL = "mnist-mlp"
IN_FLIGHT = (1, 8, 32)
INFER = "/inference.GRPCInferenceService/ModelInfer"


def wait_http(port: int, path: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2)
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.3)
    raise SystemExit("server did not start")


def wait_grpc(address: str) -> None:
    import tritonclient.grpc as triton

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if triton.InferenceServerClient(address).is_server_ready():
                return
        except Exception:  # noqa: BLE001 (not listening yet)
            pass
        time.sleep(0.3)
    raise SystemExit(f"no gRPC server at {address}")


def image() -> np.ndarray:
    """One MNIST test digit, [1, 1, 28, 28] float32 in [0, 1]."""
    from zoo.core.data import mnist_test_images

    images, _ = mnist_test_images(Path(os.environ.get("ZOO_DATA_DIR", ROOT.parent / "shared" / "data")), 1)
    return images.numpy().astype(np.float32)


def grpc_message(pixels: np.ndarray) -> bytes:
    """The ModelInferRequest tritonclient.grpc sends for `pixels` (binary), framed as one gRPC message."""
    import tritonclient.grpc as triton
    from tritonclient.grpc import _utils

    tensor = triton.InferInput("image", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    request = _utils._get_inference_request(
        model_name=MODEL, inputs=[tensor], model_version="", request_id="", outputs=None, sequence_id=0,
        sequence_start=False, sequence_end=False, priority=0, timeout=None, parameters=None)
    payload = request.SerializeToString()
    return b"\x00" + struct.pack(">I", len(payload)) + payload


def v2_json(pixels: np.ndarray) -> bytes:
    return json.dumps({"inputs": [{"name": "image", "shape": list(pixels.shape), "datatype": "FP32",
                                   "data": pixels.reshape(-1).tolist()}]}).encode()


def summary(latencies_ms: list[float], seconds: float, errors: int) -> dict[str, float]:
    latencies_ms.sort()
    return {"rps": len(latencies_ms) / seconds, "p50": statistics.median(latencies_ms),
            "p99": latencies_ms[int(0.99 * (len(latencies_ms) - 1))], "errors": errors}


def h2load(port: int, message: bytes, seconds: float, in_flight: int, scratch: Path) -> dict[str, float]:
    """h2load's gRPC load: `in_flight` connections of one stream each, for `seconds` after a 1 s warm-up."""
    body, log = scratch / "grpc.bin", scratch / "h2load.log"
    body.write_bytes(message)
    log.unlink(missing_ok=True)
    subprocess.run(
        ["h2load", "-c", str(in_flight), "-m", "1", "-t", "2" if in_flight > 1 else "1", "--warm-up-time=1",
         "-D", str(int(seconds)), "-d", str(body), "-H", "content-type: application/grpc", "-H", "te: trailers",
         "--log-file", str(log), f"http://127.0.0.1:{port}{INFER}"],
        capture_output=True, text=True, check=True)
    rows = [line.split("\t") for line in log.read_text().splitlines() if line]
    done = [int(row[2]) / 1000 for row in rows if row[1] == "200"]
    return summary(done, seconds, len(rows) - len(done))


def _python_client(kind: str, target: str, body: bytes, seconds: float, threads: int, out: multiprocessing.Queue):
    """One process of `threads` client threads, each with its own connection, calling until `seconds` pass."""
    import tritonclient.grpc as triton_grpc
    import tritonclient.http as triton_http

    pixels = np.frombuffer(body, np.float32).reshape(1, 1, 28, 28)
    results: list[list[float]] = [[] for _ in range(threads)]
    errors = [0] * threads
    start = threading.Barrier(threads)

    def run(index: int) -> None:
        if kind == "grpc":
            client = triton_grpc.InferenceServerClient(target, channel_args=[("grpc.use_local_subchannel_pool", 1)])
            tensor = triton_grpc.InferInput("image", [1, 1, 28, 28], "FP32")
        else:
            client = triton_http.InferenceServerClient(target, concurrency=1)
            tensor = triton_http.InferInput("image", [1, 1, 28, 28], "FP32")
        if kind == "grpc":
            tensor.set_data_from_numpy(pixels)
        else:
            tensor.set_data_from_numpy(pixels, binary_data=False)
        for _ in range(20):  # warm-up
            client.infer(MODEL, [tensor])
        start.wait()
        end = time.perf_counter() + seconds
        while (now := time.perf_counter()) < end:
            try:
                client.infer(MODEL, [tensor])
                results[index].append((time.perf_counter() - now) * 1000)
            except Exception:  # noqa: BLE001 (counted)
                errors[index] += 1

    workers = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put(([t for r in results for t in r], sum(errors)))


def python_clients(kind: str, target: str, pixels: np.ndarray, seconds: float, in_flight: int) -> dict[str, float]:
    processes = min(in_flight, 2)
    queue: multiprocessing.Queue = multiprocessing.Queue()
    started = [multiprocessing.Process(target=_python_client,
                                       args=(kind, target, pixels.tobytes(), seconds, in_flight // processes, queue))
               for _ in range(processes)]
    for process in started:
        process.start()
    parts = [queue.get(timeout=seconds + 120) for _ in started]
    for process in started:
        process.join()
    return summary([t for latencies, _ in parts for t in latencies], seconds, sum(e for _, e in parts))


def check_answers(address: str, pixels: np.ndarray) -> None:
    """The gRPC answer is the right digit's logits, so that h2load's 200s are real answers."""
    import tritonclient.grpc as triton

    tensor = triton.InferInput("image", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels)
    logits = triton.InferenceServerClient(address).infer(MODEL, [tensor]).as_numpy("logits")
    assert logits.shape == (1, 10), logits.shape


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kserve-python", default=sys.executable)
    parser.add_argument("--clients", default="c,python", help="c, python or both (comma-separated)")
    parser.add_argument("--floor", action="store_true",
                        help="add the gRPC floor (benchmarks/grpc_floor.py: grpc.aio, a fixed answer) to the C rows, "
                             "in one process (as KServe's server) and in --workers processes (as zoo's)")
    args = parser.parse_args()
    kinds = set(args.clients.split(","))
    weights = ROOT / "weights"
    model_file = weights / MODEL / "1" / "model.onnx"
    pixels = image()
    zoo_cli = str(Path(sys.executable).with_name("zoo"))
    http_port, grpc_port, kserve_port = free_port(), free_port(), free_port()
    kserve_grpc = free_port()
    floors = {1: free_port(), args.workers: free_port()} if args.floor else {}  # processes: port
    servers = []
    rows: list[tuple[str, str, int, dict[str, float]]] = []
    with tempfile.TemporaryDirectory() as folder:
        scratch = Path(folder)
        try:
            zoo = subprocess.Popen(
                [zoo_cli, "serve", "--port", str(http_port), "--grpc-port", str(grpc_port), "--weights-dir",
                 str(weights), "--models", MODEL, "--versions", "1", "--workers", str(args.workers),
                 "--poll-seconds", "0"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
            servers.append(zoo)
            kserve = subprocess.Popen(
                [args.kserve_python, str(ROOT / "benchmarks" / "kserve_baseline.py"), "--model-file", str(model_file),
                 "--name", MODEL, "--port", str(kserve_port), "--grpc-port", str(kserve_grpc)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder)
            servers.append(kserve)
            for processes, port in floors.items():
                servers.append(subprocess.Popen(
                    [sys.executable, str(ROOT / "benchmarks" / "grpc_floor.py"), str(port), "--processes",
                     str(processes)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder))
            wait_http(http_port, "/v2/health/ready", zoo)
            wait_http(kserve_port, "/v2/health/ready", kserve)
            for address in (f"127.0.0.1:{grpc_port}", f"127.0.0.1:{kserve_grpc}"):
                wait_grpc(address)
                check_answers(address, pixels)
            for port in floors.values():
                wait_grpc(f"127.0.0.1:{port}")
            message, body = grpc_message(pixels), v2_json(pixels)
            for round_ in range(1, args.rounds + 1):
                for in_flight in IN_FLIGHT:
                    before = len(rows)
                    if "c" in kinds:
                        rows.append((f"zoo HTTP v2 JSON (wrk), round {round_}", "c", in_flight,
                                     load_wrk(http_port, f"/v2/models/{MODEL}/infer", body, args.seconds,
                                              in_flight, scratch)))
                        rows.append((f"zoo gRPC binary (h2load), round {round_}", "c", in_flight,
                                     h2load(grpc_port, message, args.seconds, in_flight, scratch)))
                        rows.append((f"KServe ModelServer gRPC binary (h2load), round {round_}", "c", in_flight,
                                     h2load(kserve_grpc, message, args.seconds, in_flight, scratch)))
                        for processes, port in floors.items():
                            rows.append((f"gRPC floor: grpc.aio, fixed answer, {processes} process"
                                         f"{'es' if processes > 1 else ''} (h2load), round {round_}", "c",
                                         in_flight, h2load(port, message, args.seconds, in_flight, scratch)))
                    if "python" in kinds:
                        rows.append((f"zoo HTTP v2 JSON (tritonclient.http), round {round_}", "python", in_flight,
                                     python_clients("http", f"127.0.0.1:{http_port}", pixels, args.seconds,
                                                    in_flight)))
                        rows.append((f"zoo gRPC binary (tritonclient.grpc), round {round_}", "python", in_flight,
                                     python_clients("grpc", f"127.0.0.1:{grpc_port}", pixels, args.seconds,
                                                    in_flight)))
                        rows.append((f"KServe gRPC binary (tritonclient.grpc), round {round_}", "python", in_flight,
                                     python_clients("grpc", f"127.0.0.1:{kserve_grpc}", pixels, args.seconds,
                                                    in_flight)))
                    for label, _, flight, result in rows[before:]:
                        print(f"{label:58s} {flight:3d} in flight: {result['rps']:8.0f} req/s  p50 "
                              f"{result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms  errors {result['errors']}",
                              flush=True)
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                try:
                    server.wait(15)
                except subprocess.TimeoutExpired:
                    server.kill()
    print("\n| server and client | in flight | requests/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, _, flight, result in rows:
        print(f"| {label} | {flight} | {result['rps']:,.0f} | {result['p50']:.2f} | {result['p99']:.2f} | "
              f"{result['errors']} |")


if __name__ == "__main__":
    if shutil.which("h2load") is None or shutil.which("wrk") is None:
        print("note: the C-client rows need wrk and h2load (apt-get install wrk nghttp2-client)", file=sys.stderr)
    main()
