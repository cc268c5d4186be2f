"""Benchmark: loading a city-sized GBFS geofencing_zones.json (target: under a second).

Two feeds: the real Paris feed in tests/data/gbfs-feeds (272 zones, 2,613 positions) and a
generated large city (``--zones`` zones of ``--vertices`` positions each, by default 800 x 64 =
51,200 positions) carrying the quirks the reader accepts with warnings: the 2.x vehicle type
key in a 3.0 feed (every rule), a nested second polygon (every 10th zone), a null geometry
(every 25th), time windows, and zones overlapping one another.

Timing window: from the feed's JSON text, already in memory, to a ready ``RuleBundle``
(``load_bundle``: JSON decoding, schema check, warnings, zone shapes with the union of
nested polygons, projection, zone index, plan); reading the file is outside it. Baseline,
in the same run on the same text: ``json.loads`` plus ``shapely.geometry.shape`` of every
feature's geometry, the least any consumer of the feed does. The two run in alternating
turns (``--repeat`` each), so a busy machine slows both alike; medians and maxima are
printed. ``--json`` prints one JSON object.
Usage: .venv/bin/python bench/gbfs_load.py [--zones 800] [--vertices 64] [--repeat 7] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shapely.geometry import shape

from dockgate.gateway.rules import load_bundle

PARIS = Path(__file__).resolve().parents[1] / "tests/data/gbfs-feeds/schema-fixture-3.0-paris.json"
LAT0, LON0 = 45.4642, 9.19
KY = 111_195.0
KX = KY * math.cos(math.radians(LAT0))
BUDGET_S = 1.0


def _ring(cx: float, cy: float, r: float, n: int, rng: random.Random) -> list[list[float]]:
    """A closed, star-free ring of ``n`` positions around (cx, cy) metres, radius ~r."""
    pts = []
    for i in range(n):
        a = 2 * math.pi * i / n
        d = r * (1 + 0.15 * math.sin(5 * a) + rng.uniform(-0.03, 0.03))
        pts.append([LON0 + (cx + d * math.cos(a)) / KX, LAT0 + (cy + d * math.sin(a)) / KY])
    return [*pts, pts[0]]


def make_city(zones: int, vertices: int, seed: int = 5) -> dict[str, Any]:
    """A GBFS 3.0 feed of ``zones`` zones over a ~20 km city, with the tolerated quirks."""
    rng = random.Random(seed)
    features = []
    for i in range(zones):
        cx, cy = rng.uniform(-10_000, 10_000), rng.uniform(-10_000, 10_000)
        r = rng.uniform(60, 900)
        polygons = [[_ring(cx, cy, r, vertices, rng)]]
        if i % 10 == 9:  # the specification's old example: a second polygon inside the first
            polygons.append([_ring(cx, cy, r / 3, max(4, vertices // 4), rng)])
        geometry = None if i % 25 == 24 else {"type": "MultiPolygon", "coordinates": polygons}
        props: dict[str, Any] = {
            "name": [{"text": f"zone {i}", "language": "en"}],
            "rules": [
                {
                    "vehicle_type_id": ["escooter"],  # the 2.x spelling
                    "ride_start_allowed": i % 3 != 0,
                    "ride_end_allowed": i % 4 != 0,
                    "ride_through_allowed": i % 7 != 0,
                    "maximum_speed_kph": rng.choice((6, 10, 15, 20)),
                },
                {
                    "ride_start_allowed": True,
                    "ride_end_allowed": True,
                    "ride_through_allowed": True,
                },
            ],
        }
        if i % 12 == 0:
            props["start"], props["end"] = "2025-06-01T07:00:00+02:00", "2025-09-30T22:00:00+02:00"
        features.append({"type": "Feature", "geometry": geometry, "properties": props})
    return {
        "last_updated": "2025-06-01T00:00:00Z",
        "ttl": 60,
        "version": "3.0",
        "data": {
            "geofencing_zones": {"type": "FeatureCollection", "features": features},
            "global_rules": [
                {
                    "ride_start_allowed": False,
                    "ride_end_allowed": False,
                    "ride_through_allowed": True,
                }
            ],
        },
    }


def baseline(text: str) -> int:
    """``json.loads`` and a shapely geometry per feature: what any consumer must do."""
    doc = json.loads(text)
    shapes = [
        shape(f["geometry"]) for f in doc["data"]["geofencing_zones"]["features"] if f["geometry"]
    ]
    return len(shapes)


def gateway(text: str) -> int:
    bundle = load_bundle(text)
    assert bundle.gbfs is not None
    return len(bundle.gbfs.zones)


def alternate(
    runs: dict[str, Callable[[str], int]], text: str, repeat: int
) -> dict[str, list[float]]:
    """Seconds per run of each callable, taken in alternating turns."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, run in runs.items():
            t0 = time.perf_counter()
            run(text)
            times[name].append(time.perf_counter() - t0)
    return times


def measure(label: str, text: str, repeat: int) -> dict[str, Any]:
    doc = json.loads(text)
    features = doc["data"]["geofencing_zones"]["features"]
    positions = sum(
        len(ring)
        for f in features
        if f["geometry"]
        for poly in f["geometry"]["coordinates"]
        for ring in poly
    )
    bundle = load_bundle(text)
    times = alternate({"gateway": gateway, "baseline": baseline}, text, repeat)
    g, b = statistics.median(times["gateway"]), statistics.median(times["baseline"])
    return {
        "feed": label,
        "bytes": len(text.encode()),
        "features": len(features),
        "zones_loaded": len(bundle.gbfs.zones) if bundle.gbfs else 0,
        "positions": positions,
        "warnings": {str(w.code): len(w.locations) for w in bundle.warnings},
        "load_ms_median": round(g * 1e3, 1),
        "load_ms_max": round(max(times["gateway"]) * 1e3, 1),
        "baseline_ms_median": round(b * 1e3, 1),
        "ratio_to_baseline": round(g / b, 2),
        "under_budget": max(times["gateway"]) < BUDGET_S,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--zones", type=int, default=800)
    ap.add_argument("--vertices", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    city = json.dumps(make_city(args.zones, args.vertices))
    results = [
        measure("paris (real)", PARIS.read_text(), args.repeat),
        measure(f"generated {args.zones} x {args.vertices}", city, args.repeat),
    ]
    if args.json:
        print(json.dumps({"budget_s": BUDGET_S, "repeat": args.repeat, "feeds": results}))
        return
    print(f"GBFS geofencing_zones load, JSON text to ready bundle; {args.repeat} alternating runs")
    for r in results:
        print(
            f"  {r['feed']:26} {r['features']:5} features {r['positions']:7,} positions "
            f"{r['bytes'] / 1e6:6.2f} MB"
        )
        print(
            f"    gateway load     median {r['load_ms_median']:8.1f} ms"
            f"  max {r['load_ms_max']:8.1f} ms"
            f"  ({'under' if r['under_budget'] else 'OVER'} {BUDGET_S:.0f} s)"
        )
        print(
            f"    baseline         median {r['baseline_ms_median']:8.1f} ms"
            f"  (json.loads + shapely shape; gateway {r['ratio_to_baseline']}x)"
        )
        print(f"    warnings         {r['warnings'] or '-'}")


if __name__ == "__main__":
    main()
