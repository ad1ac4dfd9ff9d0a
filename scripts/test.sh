#!/usr/bin/env bash
# The whole test suite, lint and types included (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ruff check dynawheel tests scripts benchmarks fixtures
$PYTHON -m mypy
$PYTHON -m pytest -n 2 --durations=15 "$@"
