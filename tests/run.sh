#!/usr/bin/env bash
# The README's test command: set up everything the tests need on a fresh machine, then run them all.
set -euo pipefail
cd "$(dirname "$0")/.."
# Headless Chromium and its driver for the drawing-page browser test (Debian's packages; never a downloaded browser).
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
    SUDO=$([ "$(id -u)" -eq 0 ] || echo sudo)
    $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium chromium-driver
fi
python3 -m venv .venv
.venv/bin/pip install --quiet --upgrade pip
.venv/bin/pip install --quiet -e ".[test]"
export ZOO_DATA_DIR="${ZOO_DATA_DIR:-$(cd .. && pwd)/shared/data}"
# The code checks first (configured in pyproject.toml): ruff's lint rules, then mypy over zoo/, cli/ and serve/.
.venv/bin/ruff check .
.venv/bin/python tests/typecheck.py
# In random order (pytest-randomly, named so that a missing plugin fails here rather than runs in file order). -q
# hides the plugin's own header line, so the seed is drawn here and printed first; `bash tests/run.sh
# --randomly-seed=N` runs that order again.
plugin=(-p randomly)
case " $* " in
    *" -p no:randomly "*) plugin=() ;;
    *" --randomly-seed"*) ;;
    *) seed="$(python3 -c 'import random; print(random.randrange(2 ** 32))')"
       echo "Using --randomly-seed=$seed"
       set -- "--randomly-seed=$seed" "$@" ;;
esac
.venv/bin/python -m pytest -q "${plugin[@]}" "$@"
