#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs dockgate's main job on embedded defaults.
# Usage: bash scripts/demo.sh [arguments for the demo]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m gateway.demo_tags "$@"
