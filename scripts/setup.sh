#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs spapi-proxy at the versions constraints.txt pins
# (the ones CI tests; scripts/lock.sh renews them). Idempotent.
#   scripts/setup.sh            the proxy and its test tools (scripts/test.sh, CI)
#   scripts/setup.sh --runtime  only what the proxy needs to run (scripts/demo.sh): a quarter of
#                               the packages; tools already in .venv stay, pip removes nothing
set -euo pipefail
cd "$(dirname "$0")/.."
target='.[test]'
if [ "${1:-}" = --runtime ]; then target='.'; fi
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "spapi-proxy needs Python >= 3.11")'
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e "$target"
