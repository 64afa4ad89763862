#!/usr/bin/env bash
# Rewrites constraints.txt: the newest versions pyproject.toml's ranges admit today, resolved in a
# scratch virtualenv. Review the diff, run ./scripts/test.sh, commit both files together.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$python" -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install --quiet --disable-pip-version-check '.[test]'
{
  echo "# The exact versions CI tests, installed by scripts/setup.sh and the Docker image (pip -c)."
  echo "# Regenerate with scripts/lock.sh after changing a dependency in pyproject.toml."
  "$scratch/venv/bin/pip" freeze --exclude-editable | grep -vi '^spapi-proxy'
} > constraints.txt
echo "constraints.txt rewritten; review: git diff constraints.txt"
