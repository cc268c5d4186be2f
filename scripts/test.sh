#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs ruff, the type checker and the whole test suite,
# on SQLite, then again on PostgreSQL.
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check . || { echo "test: run '.venv/bin/ruff format .'"; exit 1; }
bash scripts/typecheck.sh
.venv/bin/python -m pytest "$@"
# The whole suite again with every store on PostgreSQL (store-level tests already ran on both
# engines above; the cluster tests run on PostgreSQL only, once).
echo "test: the suite again on PostgreSQL (--store=postgresql)"
exec .venv/bin/python -m pytest --store=postgresql --ignore-glob='tests/test_cluster_*.py' "$@"
