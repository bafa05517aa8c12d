#!/usr/bin/env bash
# Demo on a fresh Debian machine (as root): install what is needed, then run scripts/demo.py.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
exec python3 scripts/demo.py
