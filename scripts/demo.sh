#!/usr/bin/env bash
# Set up and run the demo: the proxy on 127.0.0.1:8000 in front of the offline emulator.
# Installs only what the proxy needs to run; scripts/test.sh adds the test tools.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --runtime
exec .venv/bin/spapi-proxy demo "$@"
