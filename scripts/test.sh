#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs ruff, the type checker and the whole test suite.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check . || { echo "test: run '.venv/bin/ruff format .'"; exit 1; }
bash scripts/typecheck.sh
exec .venv/bin/python -m pytest "$@"
