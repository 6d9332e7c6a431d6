#!/usr/bin/env bash
# Run the test suite in the project's virtual environment (made by scripts/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q --durations=15 "$@"
