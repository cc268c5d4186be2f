#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs `dockgate demo` on embedded defaults: a private
# Mosquitto, pcscd with virtual readers, the gateway daemon, a simulated fleet and backend, and
# a scripted day checked step by step (docs/demo.md).
# Usage: bash scripts/demo.sh [--once] [--no-ui] [--speed X]
# Without a terminal (CI, ssh without -t) the output is plain lines, as with --no-ui.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/dockgate demo "$@"
