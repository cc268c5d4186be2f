#!/usr/bin/env bash
# mypy --strict over all production code (gateway, drivers, api, simulators) as the installed
# ``dockgate`` package sees it. The folders map to ``dockgate.*`` only through the build's
# package-dir table, which mypy cannot read, so a tree of four symlinks in the cache folder stands in
# for the installed layout; paths in the report are rewritten back to the repository's.
# Usage: bash scripts/typecheck.sh [mypy arguments]
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
cache=${MYPY_CACHE_DIR:-$root/.mypy_cache}
# A stable place, so that the paths mypy keeps in its cache stay the ones reported.
stage=$cache/layout
rm -rf "$stage"
mkdir -p "$stage/dockgate"
ln -s "$root/gateway" "$stage/dockgate/gateway"
ln -s "$root/drivers" "$stage/dockgate/drivers"
ln -s "$root/api" "$stage/dockgate/api"
ln -s "$root/firmware-sim/firmware_sim" "$stage/dockgate/sim"
set +e
MYPYPATH="$stage:$root/typings" .venv/bin/mypy --python-executable .venv/bin/python \
  --cache-dir "$cache" -p dockgate "$@" 2>&1 |
  sed -e "s#[^ :]*layout/dockgate/sim/#firmware-sim/firmware_sim/#g" \
    -e "s#[^ :]*layout/dockgate/##g"
status=${PIPESTATUS[0]}
exit "$status"
