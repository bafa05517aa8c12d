#!/usr/bin/env bash
# Full check: dependencies, lint, format, types, tests. Extra arguments go to pytest.
#   bash scripts/test.sh                       # everything
#   bash scripts/test.sh -k harness -x         # a selection
# Environment: SKIP_INSTALL=1 skips scripts/install-deps.sh;
# POOLBACKEND_TEST_TIMEOUT (default 300) limits each test phase in seconds.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONDONTWRITEBYTECODE=1

if [ "${SKIP_INSTALL:-0}" != 1 ]; then
  bash scripts/install-deps.sh || { echo "test.sh: install-deps.sh failed" >&2; exit 1; }
fi

failed=()
step() {
  local name=$1
  shift
  echo "==> $name"
  local t0=$SECONDS
  if "$@"; then
    echo "==> $name: ok ($((SECONDS - t0))s)"
  else
    echo "==> $name: FAILED ($((SECONDS - t0))s)"
    failed+=("$name")
  fi
}

# Every external program the suite and the product run, run once: a package missing from
# install-deps.sh fails here by name instead of somewhere deep in the suite.
step "installed tools" "$PYTHON" -m pytest -q -p no:cacheprovider tests/integration/test_installed_tools.py
step "ruff check" "$PYTHON" -m ruff check .
step "ruff format" "$PYTHON" -m ruff format --check .
step "mypy" "$PYTHON" -m mypy

# Last-resort guard on the whole run (each test phase has its own limit, see
# tests/conftest.py); SIGINT first so pytest still prints its summary.
echo "==> pytest"
t0=$SECONDS
timeout --signal=INT --kill-after=60 1800 "$PYTHON" -m pytest -q "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "==> pytest: no tests were collected (exit 5): a selection that runs nothing proves nothing"
fi
if [ "$rc" -ne 0 ]; then
  echo "==> pytest: FAILED with exit code $rc ($((SECONDS - t0))s)"
  failed+=("pytest")
else
  echo "==> pytest: ok ($((SECONDS - t0))s)"
fi

if ((${#failed[@]})); then
  echo "test.sh: FAILED: ${failed[*]}"
  exit 1
fi
echo "test.sh: all checks passed"
