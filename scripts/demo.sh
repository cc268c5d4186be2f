#!/usr/bin/env bash
# Sets up everything (scripts/setup.sh) and runs dockgate's main job on embedded defaults:
# SUN messages made by a simulated NTAG 424 DNA tag, verified by the gateway's verifier,
# including a forged one and a replay that it must refuse.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
dockgate=.venv/bin/dockgate
state=$(mktemp -d)
trap 'rm -rf "$state"' EXIT

echo "== Shipped examples (AN12196 vector, simulated tags, bad input): one result per line"
$dockgate tag verify --batch < config/examples/sun-batch.jsonl

echo "== A simulated card's taps, verified with the replay store"
mapfile -t urls < <($dockgate tag simulate --count 3 --profile senzu-play --base https://api.senzu.app \
  --meta-read-key 00112233445566778899aabbccddeeff --file-read-key ffeeddccbbaa99887766554433221100)
for url in "${urls[@]}" "${urls[1]}"; do
  echo "tap: $url"
  $dockgate tag verify "$url" --config config/examples/sun.toml --state "$state/replay.db" || true
done
echo "(the last tap repeats an earlier message: refused as replayed)"
