#!/usr/bin/env bash
# Creates .venv (Python >= 3.11) and installs spapi-proxy with its test tools, at the versions
# constraints.txt pins (the ones CI tests; scripts/lock.sh renews them). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "spapi-proxy needs Python >= 3.11")'
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
