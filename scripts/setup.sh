#!/usr/bin/env bash
# Install everything the demo and the tests need: Debian packages (compilers for the
# fixtures, wine for the PE loader tests, graphviz) and dynawheel with its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
pkgs=$(grep -v '^\s*#' .ci/apt-packages.txt | sort -u | tr '\n' ' ')
missing=""
for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
extra=$(grep -v '^\s*#' .ci/pip-packages.txt | sort -u | tr '\n' ' ')
$PYTHON -m pip install -q --disable-pip-version-check -e '.[test]' $extra
