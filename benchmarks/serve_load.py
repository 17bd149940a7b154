"""Load on `zoo serve` beside two baselines measured in the same run on loopback: a plain single-route Flask app
on Flask's development server, and KServe's own model server (kserve.ModelServer) serving the same model.onnx.

Requests: one digit as a PNG (v1), one digit as a v2 JSON tensor, and batches of 32 digits (v1 JSON pixels, v2
JSON). wrk (apt-get install wrk) drives the load when it is installed, else this script's client threads.

`--floor` measures single v2 JSON requests only, on `zoo serve` beside two floors on granian (benchmarks/floor_apps.py:
a raw ASGI app returning a fixed answer, and a Flask app on granian's WSGI interface with one thread that parses the
body with orjson and returns the same answer), in `--rounds` rounds of one run, with zoo's ratios to the Flask floor.

`--overload` measures instead what 512 connections do to 2 workers, with the queue bound (`--max-queue`, the
default) and without it (`--max-queue 0`), beside the same server at 8 connections, all in one run. hey
(apt-get install hey) drives it, because it records every request's status and latency, so the p99 of the
answered requests is read apart from the refusals. A last row is the floor: granian's ASGI path with an app that
answers a constant 503 at once (what a refusal costs with no zoo code at all), under the same 512 connections.
On a shared machine, run it under `chrt -r 10` (root) so that other work does not take the cores mid-run.

    ZOO_DATA_DIR=../shared/data python benchmarks/serve_load.py [--kserve-python /tmp/kserve/bin/python] [--seconds 10]
    ZOO_DATA_DIR=../shared/data python benchmarks/serve_load.py --overload [--seconds 10]
    ZOO_DATA_DIR=../shared/data python benchmarks/serve_load.py --floor [--rounds 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL, BATCH = "mnist-mlp", 32
FLOOR = "floor: granian ASGI, a constant 503"


def baseline_app(weights_dir: str):
    """What one would write first: Flask, the torch model, one predict route."""
    import torch
    from flask import Flask, jsonify, request

    from zoo.store.loading import load_version

    model = load_version(MODEL, weights_dir=weights_dir).model
    app = Flask("baseline")

    @app.post("/predict")
    def predict():
        pixels = torch.tensor(request.get_json()["pixels"], dtype=torch.float32).reshape(-1, 1, 28, 28) / 255.0
        with torch.no_grad():
            probabilities = torch.softmax(model(pixels), 1)
        return jsonify(predictions=[{"digit": int(p.argmax()), "probabilities": p.tolist()} for p in probabilities])

    return app


REFUSAL = b'{"error": "Service Unavailable: this worker has its limit of requests waiting; retry after a second"}'
REFUSAL_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(REFUSAL)).encode()),
                   (b"retry-after", b"1")]


async def constant_refusal(scope: dict, receive, send) -> None:
    """The overload floor: an ASGI app that answers every request with the same 503 at once, reading nothing."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 503, "headers": REFUSAL_HEADERS})
        await send({"type": "http.response.body", "body": REFUSAL})


def refusal_server(port: int, workers: int) -> None:
    """`constant_refusal` under granian as `zoo serve` runs it: the same workers and backlog."""
    from granian.constants import Interfaces
    from granian.server import Server

    from zoo.serve.runner import BACKLOG

    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parent), os.environ.get("PYTHONPATH")]))
    Server("serve_load:constant_refusal", address="127.0.0.1", port=port, interface=Interfaces.ASGI,
           workers=workers, backlog=BACKLOG, log_level="warning").serve()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(command: list[str], port: int, ready_path: str) -> subprocess.Popen:
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}{ready_path}", timeout=2)
            return process
        except urllib.error.HTTPError:  # an answer, even a 404, means it is up
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server did not start: {' '.join(command)}")


def load(port: int, path: str, body: bytes, requests: int, concurrency: int,
         content_type: str = "application/json") -> dict[str, float]:
    """Send `requests` POSTs from `concurrency` threads; requests/s, p50/p99 latency (ms) and errors."""
    local = threading.local()

    def one(_: int) -> tuple[float, bool]:
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        started = time.perf_counter()
        try:
            local.connection.request("POST", path, body, {"Content-Type": content_type})
            response = local.connection.getresponse()
            response.read()
            ok = response.status == 200
        except (OSError, http.client.HTTPException):
            local.connection.close()
            del local.connection
            ok = False
        return time.perf_counter() - started, ok

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(concurrency * 5)))  # warm-up: connections open, caches hot
        started = time.perf_counter()
        results = list(pool.map(one, range(requests)))
        elapsed = time.perf_counter() - started
    latencies = sorted(r[0] * 1000 for r in results)
    return {
        "rps": requests / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "errors": sum(not r[1] for r in results),
    }


WRK_SCRIPT = """
wrk.method = "POST"
wrk.headers["Content-Type"] = os.getenv("ZOO_BENCH_TYPE")
local file = io.open(os.getenv("ZOO_BENCH_BODY"), "rb")
wrk.body = file:read("*a")
file:close()
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests": %d, "seconds": %f, "p50": %f, "p99": %f, "errors": %d}\\n',
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
    e.connect + e.read + e.write + e.status + e.timeout))
end
"""


def load_wrk(port: int, path: str, body: bytes, seconds: float, concurrency: int, scratch: Path,
             content_type: str = "application/json") -> dict[str, float]:
    """The same load from wrk (C, up to two threads, `concurrency` keep-alive connections) for `seconds`, after a 1 s
    warm-up run."""
    (scratch / "body.bin").write_bytes(body)
    (scratch / "post.lua").write_text(WRK_SCRIPT)
    env = {**os.environ, "ZOO_BENCH_BODY": str(scratch / "body.bin"), "ZOO_BENCH_TYPE": content_type}
    for duration in (1, seconds):  # the first run warms up
        output = subprocess.run(
            [
                "wrk",
                f"-t{min(2, concurrency)}",  # wrk wants a connection for each thread
                f"-c{concurrency}",
                f"-d{int(duration)}s",
                "-s",
                str(scratch / "post.lua"),
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
    result = json.loads(output.stdout.strip().splitlines()[-1])
    return {
        "rps": result["requests"] / result["seconds"],
        "p50": result["p50"],
        "p99": result["p99"],
        "errors": result["errors"],
    }


def load_hey(
    port: int, path: str, body: bytes, seconds: float, concurrency: int, scratch: Path, status: str = "200"
) -> dict[str, float]:
    """hey's load (`concurrency` keep-alive connections for `seconds`), read request by request from its CSV: the
    answered requests' rate and latency apart from the 503s, and any other failure. For the floor, whose every
    answer is a 503, `status` is "503"."""
    import csv

    (scratch / "body.bin").write_bytes(body)
    for duration in (1, seconds):  # the first run warms up
        output = subprocess.run(
            [
                "hey",
                "-c",
                str(concurrency),
                "-z",
                f"{duration}s",
                "-m",
                "POST",
                "-T",
                "application/json",
                "-D",
                str(scratch / "body.bin"),
                "-o",
                "csv",
                f"http://127.0.0.1:{port}{path}",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    rows = list(csv.DictReader(output.stdout.splitlines()))
    answered = sorted(float(row["response-time"]) * 1000 for row in rows if row["status-code"] == status)
    refused = sum(row["status-code"] == "503" for row in rows) if status == "200" else 0
    return {
        "rps": len(answered) / seconds,
        "p50": statistics.median(answered),
        "p99": answered[int(0.99 * (len(answered) - 1))],
        "503s": refused / seconds,
        "errors": len(rows) - len(answered) - refused,
    }


def overload(weights: Path, scratch: Path, seconds: float, workers: int, body: bytes) -> None:
    """Rows for `zoo serve` at 8 connections, and at 512 with and without the queue bound, in one run."""
    zoo_cli = str(Path(sys.executable).with_name("zoo"))
    rows = []
    for label, extra, concurrency in (
        ("bound (default --max-queue)", [], 8),
        ("bound (default --max-queue)", [], 512),
        ("bound (--max-queue 8)", ["--max-queue", "8"], 512),
        ("no bound (--max-queue 0)", ["--max-queue", "0"], 512),
        (FLOOR, [], 512),
    ):
        port = free_port()
        if label == FLOOR:
            command = [sys.executable, __file__, "--refusal-server", str(port), "--workers", str(workers)]
        else:
            command = [zoo_cli, "serve", "--port", str(port), "--weights-dir", str(weights), "--workers",
                       str(workers), "--poll-seconds", "0", *extra]
        process = start(command, port, "/" if label == FLOOR else "/v2/health/ready")
        try:
            status = "503" if label == FLOOR else "200"
            result = load_hey(port, f"/v2/models/{MODEL}/infer", body, seconds, concurrency, scratch, status)
        finally:
            process.terminate()
            process.wait(timeout=30)
        rows.append((label, concurrency, result))
        print(
            f"{label:30} {concurrency:4} connections  " + "  ".join(f"{k} {v:,.1f}" for k, v in result.items()),
            flush=True,
        )
    unloaded, floor = rows[0][2]["p99"], rows[-1][2]["p99"]
    print("\n| server | connections | answered/s | p50 ms | p99 ms | p99 / unloaded p99 | p99 / floor p99 | 503/s "
          "| other errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, concurrency, r in rows:
        print(f"| {label} | {concurrency} | {r['rps']:,.0f} | {r['p50']:.1f} | {r['p99']:.1f} | "
              f"{r['p99'] / unloaded:.1f}x | {r['p99'] / floor:.1f}x | {r['503s']:,.0f} | {r['errors']} |")
    print(f"\n{os.cpu_count()} CPUs, hey, single v2 JSON requests for {MODEL}, zoo serve with {workers} workers")


def floor(weights: Path, scratch: Path, args: argparse.Namespace, body: bytes) -> None:
    """Single v2 JSON requests on the two floors and on `zoo serve`, each in turn, `args.rounds` times in one run."""
    granian = [sys.executable, "-m", "granian", "--workers", str(args.workers), "--port", "{port}", "--working-dir",
               str(ROOT / "benchmarks"), "--log-level", "warning", "--no-access-log"]
    servers = {
        "granian, raw ASGI app, fixed answer": ([*granian, "--interface", "asgi", "floor_apps:raw_asgi"], "/"),
        "granian WSGI, 1 thread: Flask, orjson parse, fixed answer": (
            [*granian, "--interface", "wsgi", "--blocking-threads", "1", "floor_apps:flask_orjson"],
            "/v2/health/ready",
        ),
        "zoo serve": (
            [str(Path(sys.executable).with_name("zoo")), "serve", "--port", "{port}", "--weights-dir", str(weights),
             "--workers", str(args.workers), "--models", MODEL, "--poll-seconds", "0"],
            "/v2/health/ready",
        ),
    }
    rows: list[tuple[int, str, dict[str, float]]] = []
    for round_ in range(1, args.rounds + 1):
        for label, (command, ready) in servers.items():
            port = free_port()
            process = start([part.format(port=port) for part in command], port, ready)
            try:
                result = load_wrk(port, f"/v2/models/{MODEL}/infer", body, args.seconds, args.concurrency, scratch)
            finally:
                process.terminate()
                process.wait(timeout=60)
            rows.append((round_, label, result))
            print(f"round {round_} {label:60} " + "  ".join(f"{k} {v:,.1f}" for k, v in result.items()), flush=True)
    print("\n| round | server | requests/s | p50 ms | p99 ms | errors | requests/s / Flask floor | p99 / Flask floor |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    flask_label = list(servers)[1]
    for round_, label, r in rows:
        flask = next(f for n, lab, f in rows if n == round_ and lab == flask_label)
        print(f"| {round_} | {label} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['errors']} | "
              f"{r['rps'] / flask['rps']:.0%} | {r['p99'] / flask['p99']:.2f}x |")
    print(f"\n{os.cpu_count()} CPUs, wrk -t2 -c{args.concurrency} -d{args.seconds:g}s, single v2 JSON requests for "
          f"{MODEL} ({len(body):,} bytes), {args.workers} workers each")


def with_onnx(weights_dir: Path, scratch: Path) -> Path:
    """`weights_dir` itself when mnist-mlp's latest version has an ONNX export, else a copy with one made."""
    import zoo

    version = zoo.WeightsStore(weights_dir).resolve(MODEL, None)
    if "onnx" in zoo.WeightsStore(weights_dir).manifest(MODEL, version).get("artifacts", {}):
        return weights_dir
    for name in ("mnist-mlp", "lenet", "linear-regression"):
        if (weights_dir / name).is_dir():
            shutil.copytree(weights_dir / name, scratch / name)
            zoo.export(name, ["onnx"], weights_dir=str(scratch))
    return scratch


def png_of(digit) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(digit.astype("uint8")).save(buffer, "PNG")
    return buffer.getvalue()


def v2_body(images) -> bytes:
    return json.dumps(
        {
            "inputs": [
                {"name": "image", "shape": list(images.shape), "datatype": "FP32", "data": images.reshape(-1).tolist()}
            ]
        }
    ).encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", default=str(ROOT / "weights"))
    parser.add_argument(
        "--requests", type=int, default=2000, help="single-image requests per server (batches: a fifth)"
    )
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--client",
        choices=["wrk", "threads"],
        default="wrk" if shutil.which("wrk") else "threads",
        help="load generator: wrk (apt-get install wrk) or this script's http.client threads",
    )
    parser.add_argument("--seconds", type=float, default=10, help="length of each wrk run")
    parser.add_argument("--kserve-python", help="a Python with kserve installed, for the KServe baseline")
    parser.add_argument("--overload", action="store_true", help="512 connections, with and without the queue bound")
    parser.add_argument("--floor", action="store_true", help="single v2 JSON on zoo serve beside granian floors")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of the --floor run")
    parser.add_argument("--baseline-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--refusal-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.refusal_server:
        return refusal_server(args.refusal_server, args.workers)
    if args.baseline_server:
        return baseline_app(args.weights_dir).run("127.0.0.1", args.baseline_server)  # threaded by default

    from zoo.core.data import mnist_test_images, resolve_data_dir

    images, _ = mnist_test_images(resolve_data_dir(), BATCH)
    digits = (images[:, 0] * 255).round().to(int)
    pixels = digits.tolist()
    v1_json, v2_json, png = "application/json", "application/json", "image/png"
    requests = {  # kind -> (content type, body, path for zoo, path for the baselines)
        "single PNG": (png, png_of(digits[0].numpy()), f"/v1/models/{MODEL}/predict", None),
        "single v2 JSON": (v2_json, v2_body(images[:1].numpy()), f"/v2/models/{MODEL}/infer", "v2"),
        f"batch {BATCH} v1 JSON": (
            v1_json,
            json.dumps({"pixels": pixels}).encode(),
            f"/v1/models/{MODEL}/predict",
            "v1",
        ),
        f"batch {BATCH} v2 JSON": (v2_json, v2_body(images.numpy()), f"/v2/models/{MODEL}/infer", "v2"),
    }
    zoo_cli = str(Path(sys.executable).with_name("zoo"))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        weights = with_onnx(Path(args.weights_dir).resolve(), Path(scratch))
        if args.overload:
            return overload(weights, Path(scratch), args.seconds, args.workers, requests["single v2 JSON"][1])
        if args.floor:
            return floor(weights, Path(scratch), args, requests["single v2 JSON"][1])
        onnx_file = zoo_onnx_file(weights)
        servers = {  # label -> (command, ready path, which requests it takes: v1 baseline / v2 / zoo)
            "Flask dev server (baseline)": (
                [sys.executable, __file__, "--weights-dir", str(weights), "--baseline-server", "{port}"],
                "/",
                "v1",
            ),
            "zoo serve": (
                [
                    zoo_cli,
                    "serve",
                    "--port",
                    "{port}",
                    "--weights-dir",
                    str(weights),
                    "--workers",
                    str(args.workers),
                    "--threads",
                    str(args.threads),
                    "--poll-seconds",
                    "0",
                ],
                "/v2/health/ready",
                "zoo",
            ),
        }
        if args.kserve_python:
            servers["KServe ModelServer (onnx)"] = (
                [
                    args.kserve_python,
                    str(ROOT / "benchmarks" / "kserve_baseline.py"),
                    "--model-file",
                    str(onnx_file),
                    "--name",
                    MODEL,
                    "--port",
                    "{port}",
                ],
                f"/v2/models/{MODEL}/ready",
                "v2",
            )
        for label, (command, ready, takes) in servers.items():
            port = free_port()
            process = start([part.format(port=port) for part in command], port, ready)
            try:
                for kind, (content_type, body, zoo_path, baseline) in requests.items():
                    if takes != "zoo" and baseline != takes:
                        continue
                    path = zoo_path if takes != "v1" else "/predict"
                    if args.client == "wrk":
                        result = load_wrk(port, path, body, args.seconds, args.concurrency, Path(scratch), content_type)
                    else:
                        result = load(
                            port,
                            path,
                            body,
                            args.requests if kind.startswith("single") else max(1, args.requests // 5),
                            args.concurrency,
                            content_type,
                        )
                    rows.append((label, kind, result))
                    print(f"{label:30} {kind:18} " + "  ".join(f"{k} {v:,.1f}" for k, v in result.items()), flush=True)
            finally:
                process.terminate()
                process.wait(timeout=15)
    print()
    print("| server | request | requests/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, kind, result in rows:
        print(
            f"| {label} | {kind} | {result['rps']:,.0f} | {result['p50']:.1f} | {result['p99']:.1f} | "
            f"{result['errors']} |"
        )
    print(
        f"\n{os.cpu_count()} CPUs, client {args.client} with {args.concurrency} connections, zoo serve with "
        f"{args.workers} workers x {args.threads} threads"
    )


def zoo_onnx_file(weights: Path) -> Path:
    import zoo

    store = zoo.WeightsStore(weights)
    version = store.resolve(MODEL, None)
    return store.version_dir(MODEL, version) / zoo.FORMATS["onnx"].file


if __name__ == "__main__":
    main()
