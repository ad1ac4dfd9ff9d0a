#!/usr/bin/env bash
# The whole test suite, lint and types included (what CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
ruff check dynawheel tests scripts benchmarks fixtures
$PYTHON -m mypy
# the committed PE and Mach-O fixtures are rebuilt from source and must match their SHA256SUMS
for script in fixtures/*/build.sh; do bash "$script" --check; done
$PYTHON -m pytest -n 2 --durations=15 "$@"
