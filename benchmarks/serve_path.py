"""What one single v2 JSON request costs a worker, without sockets: the zoo's path from the front on, against
the Flask floor's app (benchmarks/floor_apps.py:flask_orjson) called the same way, in the same run.

Each request is handed to the app through the front's ASGI interface, a complete request (the scope, then the
whole body), and answered into a list; the cost is CPU time per request (process time, so that other processes on a
loaded machine count for less than in a wall-clock figure), the median of --rounds rounds of --requests requests
after a warm-up. `--profile` prints cProfile's top functions for the zoo instead.

    ZOO_DATA_DIR=../shared/data python benchmarks/serve_path.py [--requests 3000] [--rounds 5] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

MODEL = "mnist-mlp"
PATH = f"/v2/models/{MODEL}/infer"


def scope(body: bytes) -> dict[str, Any]:
    return {
        "type": "http", "method": "POST", "path": PATH, "query_string": b"", "http_version": "1.1",
        "scheme": "http", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 50000), "root_path": "",
        "headers": [(b"host", b"127.0.0.1:8000"), (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    }


def cost(app: Any, body: bytes, requests: int, rounds: int, profile: bool = False) -> tuple[float, bytes]:
    """Median CPU microseconds per request over the rounds, and the last answer's body."""
    loop = asyncio.new_event_loop()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    async def many(n: int) -> None:
        for _ in range(n):
            sent.clear()
            await app(scope(body), receive, send)

    loop.run_until_complete(many(300))  # warm-up
    if profile:
        profiler = cProfile.Profile()
        profiler.enable()
        loop.run_until_complete(many(requests))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(35)
    samples = []
    for _ in range(rounds):
        started = time.process_time()
        loop.run_until_complete(many(requests))
        samples.append((time.process_time() - started) / requests * 1e6)
    status = sent[0]["status"]
    assert status == 200, (status, sent[-1]["body"][:300])
    return statistics.median(samples), sent[-1]["body"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights-dir", default=str(ROOT / "weights"))
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()

    import floor_apps
    from serve_load import v2_body

    from zoo.core.data import mnist_test_images, resolve_data_dir
    from zoo.serve import create_app
    from zoo.serve.front import BufferedWSGI

    images, _ = mnist_test_images(resolve_data_dir(), 1)
    body = v2_body(images[:1].numpy())
    app = create_app({"WEIGHTS_DIR": args.weights_dir, "MODELS": [MODEL], "VERSIONS": "1", "BACKEND": "onnx",
                      "POLL_SECONDS": 0, "RUNTIME_THREADS": 1})
    zoo_front = BufferedWSGI(app, threads=1)
    floor_apps.flask_orjson.config.update({key: app.config[key] for key in ("MAX_CONTENT_LENGTH", "BODY_TIMEOUT",
                                                                         "MAX_QUEUE")})
    floor_front = BufferedWSGI(floor_apps.flask_orjson, threads=1)  # the same bridge: only the app differs
    if args.profile:
        cost(zoo_front, body, args.requests, 1, profile=True)
        return
    floor_us, _ = cost(floor_front, body, args.requests, args.rounds)
    zoo_us, answer = cost(zoo_front, body, args.requests, args.rounds)
    print(f"| app | CPU us per request (median of {args.rounds} x {args.requests}) | / Flask floor |")
    print("| --- | --- | --- |")
    print(f"| Flask floor (floor_apps:flask_orjson) | {floor_us:.0f} | 1.00x |")
    print(f"| zoo, mnist-mlp:1 on ONNX Runtime | {zoo_us:.0f} | {zoo_us / floor_us:.2f}x |")
    print(f"answer: {answer[:120].decode()}...", file=sys.stderr)


if __name__ == "__main__":
    main()
