#!/usr/bin/env bash
# The project's test command: install what is needed, then lint, type-check and run every test.
# Extra arguments go to pytest (e.g. scripts/test.sh -k pool).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
PY=${PYTHON:-python3}
"$PY" -m ruff check .
"$PY" -m ruff format --check .
"$PY" -m mypy
exec "$PY" -m pytest -q "$@"
