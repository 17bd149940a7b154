#!/usr/bin/env bash
# The README's test command: set up everything the tests need on a fresh machine, then run them all.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".[test]"
export ZOO_DATA_DIR="${ZOO_DATA_DIR:-$(cd .. && pwd)/shared/data}"
.venv/bin/python -m pytest -q "$@"
