#!/usr/bin/env bash
# The whole test suite, lint and types included (what CI runs). It runs with the project's virtual
# environment (.venv/, made by `make setup`) unless PYTHON names another interpreter, e.g. a worktree's own:
#   PATH=$PWD/.venv/bin:$PATH PYTHON=$PWD/.venv/bin/python bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  PYTHON=$PWD/.venv/bin/python
  [ -x "$PYTHON" ] || { echo "test.sh: no .venv here: run 'make setup' (or 'make test') first" >&2; exit 1; }
  export PATH="$PWD/.venv/bin:$PATH"
fi
"$PYTHON" -m ruff check dynawheel tests scripts benchmarks fixtures
"$PYTHON" -m mypy
# the committed PE and Mach-O fixtures are rebuilt from source and must match their SHA256SUMS
for script in fixtures/*/build.sh; do bash "$script" --check; done
"$PYTHON" -m pytest -n 2 --durations=15 "$@"
