#!/usr/bin/env bash
# Install everything the demo and the tests need: Debian packages (compilers for the fixtures, wine for
# the PE loader tests, graphviz, python3-venv) and, into the project's own virtual environment .venv/,
# dynawheel (editable) with its test extras. The interpreter that creates .venv (BASE_PYTHON, default
# python3) is never changed: nothing is installed into it.
set -euo pipefail
cd "$(dirname "$0")/.."
BASE_PYTHON=${BASE_PYTHON:-python3}
VENV=.venv
pkgs=$(grep -v '^\s*#' .ci/apt-packages.txt | sort -u | tr '\n' ' ')
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
if ! "$VENV/bin/python" -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then
  rm -rf "$VENV"
  "$BASE_PYTHON" -m venv "$VENV"
fi
extra=$(grep -v '^\s*#' .ci/pip-packages.txt | sort -u | tr '\n' ' ')
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e '.[test]' $extra
echo "setup: done; dynawheel is $PWD/$VENV/bin/dynawheel (or: . $VENV/bin/activate)"
