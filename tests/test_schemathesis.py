"""Schemathesis against a real `zoo serve`: every request /openapi.json calls valid is answered, every one it calls
invalid is refused, and every answer matches the document (`--checks all`, a fixed seed, bounded examples)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import serving

pytestmark = pytest.mark.slow
served_weights = serving.served_weights
SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


def test_schemathesis_finds_nothing_with_every_check(served_weights, tmp_path, data_dir):
    # A small batch limit keeps the document's per-batch tensor schemas, and the bodies drawn from them, small.
    process, url = serving.start_server(served_weights, tmp_path, "--workers", "1", "--poll-seconds", "0",
                                        "--max-batch", "4")
    try:
        env = {**os.environ, "SCHEMATHESIS_HOOKS": "schemathesis_hooks", "ZOO_DATA_DIR": str(data_dir),
               "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
        run = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{url}/openapi.json", "--checks", "all", "--seed", "1",
             "--max-examples", "10", "--workers", "1", "--no-color", "--generation-database", "none"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200,
        )
    finally:
        log = serving.stop_server(process)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "failures" not in run.stdout.splitlines()[-1], run.stdout[-6000:]
    assert "Traceback" not in log, log[-4000:]
