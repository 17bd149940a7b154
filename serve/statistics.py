"""Triton's statistics extension: per model and version, inference and execution counts and the cumulative
durations of successful and failed requests, of queueing and of the three compute stages, over HTTP
(`/v2/models[/NAME[/versions/N]]/stats`) and gRPC (ModelStatistics).

Each worker process adds its figures into one fixed-layout file of its own in $PROMETHEUS_MULTIPROC_DIR (where
/metrics keeps its samples, and for the same reason: any worker answers for all of them), one row of float64
per model and version, written in place with a single struct.pack_into per request, a few microseconds where a
dozen prometheus counters would take ten times as long. A reader sums every worker's file, so a killed worker's
figures stay counted, as Triton's statistics count everything since the server started. Without the folder (the
app in one process) the rows live in memory.
"""

from __future__ import annotations

import mmap
import os
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, jsonify

from zoo.serve.context import served_models
from zoo.serve.repository import ServedModels

statistics = Blueprint("statistics", __name__, url_prefix="/v2/models")

# The figures of one row, in file order. Counts of queue and compute stages equal the successes (each successful
# request is queued once and runs each stage once); Triton reports them per stage, and so do the answers.
FIELDS = ("inference_count", "success_count", "fail_count", "last_inference_ms",
          "success_ns", "fail_ns", "queue_ns", "compute_input_ns", "compute_infer_ns", "compute_output_ns")
STAGES = ("queue", "compute_input", "compute_infer", "compute_output")
_KEY = struct.Struct("<128s")  # "model\0version", UTF-8, zero-padded; an all-zero key ends the rows in use
_VALUES = struct.Struct(f"<{len(FIELDS)}d")
ROW = _KEY.size + _VALUES.size
ROWS = 512  # models x versions one worker can count; beyond it new versions go uncounted (and logged once)
# The WSGI environ key where the ASGI front puts the perf_counter() time a request's whole body had arrived.
ARRIVED = "zoo.arrived"
SUFFIX = ".zoo-statistics"  # not prometheus_client's *.db, which its collector would try to read


@dataclass
class Durations:
    """One request's stages in seconds, measured by the protocol front that handled it."""

    queue: float = 0.0
    compute_input: float = 0.0
    compute_infer: float = 0.0
    compute_output: float = 0.0


class StatisticsFile:
    """This process's rows: in a file of the multiprocess folder under `zoo serve`, else in memory."""

    def __init__(self, folder: str | None) -> None:
        self.pid = os.getpid()
        self.path = Path(folder) / f"{self.pid}{SUFFIX}" if folder else None
        if self.path is not None:
            with open(self.path, "w+b") as file:
                file.truncate(ROW * ROWS)
                self.buffer: mmap.mmap | bytearray = mmap.mmap(file.fileno(), ROW * ROWS)
        else:
            self.buffer = bytearray(ROW * ROWS)
        self.rows: dict[tuple[str, str], tuple[int, list[float]]] = {}
        self.lock = threading.Lock()  # requests run on the loop and on the long-request thread
        self.full = False

    def _row(self, model: str, version: str) -> tuple[int, list[float]] | None:
        row = self.rows.get((model, version))
        if row is None:
            if len(self.rows) >= ROWS:
                self.full = True
                return None
            offset = len(self.rows) * ROW
            _KEY.pack_into(self.buffer, offset, f"{model}\0{version}".encode()[: _KEY.size])
            row = self.rows[(model, version)] = (offset + _KEY.size, [0.0] * len(FIELDS))
        return row

    def record(self, model: str, version: str, items: int, seconds: float, stages: Durations | None) -> None:
        """Add one request: `stages` for a success (its `items` inferences), None for a failure."""
        with self.lock:
            row = self._row(model, version)
            if row is None:
                return
            offset, values = row
            if stages is None:
                values[2] += 1
                values[5] += seconds * 1e9
            else:
                values[0] += items
                values[1] += 1
                values[3] = time.time() * 1000
                values[4] += seconds * 1e9
                values[6] += stages.queue * 1e9
                values[7] += stages.compute_input * 1e9
                values[8] += stages.compute_infer * 1e9
                values[9] += stages.compute_output * 1e9
            _VALUES.pack_into(self.buffer, offset, *values)


_store: StatisticsFile | None = None
_store_lock = threading.Lock()


def store() -> StatisticsFile:
    """This process's StatisticsFile, made on first use (and again in a forked child)."""
    global _store
    if _store is None or _store.pid != os.getpid():
        with _store_lock:
            if _store is None or _store.pid != os.getpid():
                _store = StatisticsFile(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
    return _store


def record_success(model: str, version: str, items: int, seconds: float, stages: Durations) -> None:
    """Count a request answered: `items` inferences (its batch), `seconds` from arrival to answer."""
    store().record(model, version, items, seconds, stages)


def record_failure(model: str, version: str, seconds: float) -> None:
    """Count a request for a served version that was refused or failed (a bad tensor, a fault)."""
    store().record(model, version, 0, seconds, None)


def _rows(buffer: bytes) -> dict[tuple[str, str], list[float]]:
    rows: dict[tuple[str, str], list[float]] = {}
    for offset in range(0, len(buffer) - ROW + 1, ROW):
        (key,) = _KEY.unpack_from(buffer, offset)
        if not key.strip(b"\0"):
            break
        model, _, version = key.rstrip(b"\0").decode("utf-8", "replace").partition("\0")
        rows[(model, version)] = list(_VALUES.unpack_from(buffer, offset + _KEY.size))
    return rows


def totals() -> dict[tuple[str, str], list[float]]:
    """Every worker's figures summed per (model, version); last_inference is the latest of any worker."""
    own = store()
    if own.path is None:
        with own.lock:
            return _rows(bytes(own.buffer))
    summed: dict[tuple[str, str], list[float]] = {}
    for path in own.path.parent.glob(f"*{SUFFIX}"):
        try:
            data = path.read_bytes()
        except OSError:  # a file removed as it was listed
            continue
        for key, values in _rows(data).items():
            into = summed.setdefault(key, [0.0] * len(FIELDS))
            for index, value in enumerate(values):
                into[index] = max(into[index], value) if FIELDS[index] == "last_inference_ms" else into[index] + value
    return summed


def model_statistics(served: ServedModels, name: str | None = None, version: str | None = None) -> list[dict[str, Any]]:
    """Triton's $model_stat objects for the served versions: all of them, one model's, or one version's.

    An unknown model or version raises the 404-kind errors of `served.get`. Figures are integers, as in Triton.
    """
    if name is None:
        wanted = [(model, number) for model, versions in served.runtimes.items() for number in versions]
    elif version is None:
        wanted = [(name, number) for number in served.versions(name)]
    else:
        runtime = served.get(name, version)
        wanted = [(name, runtime.version)]
    figures = totals()
    answer = []
    for model, number in wanted:
        values = dict(zip(FIELDS, figures.get((model, str(number)), [0.0] * len(FIELDS)), strict=True))
        successes = int(values["success_count"])
        stats = {"success": _duration(successes, values["success_ns"]),
                 "fail": _duration(int(values["fail_count"]), values["fail_ns"]),
                 **{stage: _duration(successes, values[f"{stage}_ns"]) for stage in STAGES},
                 "cache_hit": _duration(0, 0), "cache_miss": _duration(0, 0)}
        answer.append({"name": model, "version": str(number), "last_inference": int(values["last_inference_ms"]),
                       "inference_count": int(values["inference_count"]), "execution_count": successes,
                       "inference_stats": stats, "batch_stats": []})
    return answer


def _duration(count: int, ns: float) -> dict[str, int]:
    return {"count": count, "ns": int(round(ns))}


@statistics.get("/stats")
def all_statistics() -> Response:
    return jsonify(model_stats=model_statistics(served_models()))


@statistics.get("/<name>/stats")
@statistics.get("/<name>/versions/<version>/stats")
def one_model_statistics(name: str, version: str | None = None) -> Response:
    return jsonify(model_stats=model_statistics(served_models(), name, version))
