"""Benchmark of the rules engine: evaluations/s against 1,000 zones and a detailed border.

Prints, for the same run: the engine per call (``evaluate``), the engine in bulk
(``evaluate_many``), a naive loop over shapely polygons doing the same membership work, and
the cost of loading plus swapping a 1,000-zone bundle. ``--json`` prints one JSON object.
Usage: .venv/bin/python bench/rules.py [--seconds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time

import shapely

from gateway.rules import RulesEngine, Trip, VehicleState, load_bundle

LAT0, LON0 = 45.4642, 9.19
KY = 111_195.0
KX = KY * math.cos(math.radians(LAT0))


def _ll(x: float, y: float) -> list[float]:
    return [LON0 + x / KX, LAT0 + y / KY]


def make_bundle(n_zones: int = 1000, border_vertices: int = 4000, seed: int = 7) -> dict:
    """A city of ~8 km radius: a wiggly border and ``n_zones`` small speed zones/parkings."""
    rng = random.Random(seed)
    border = []
    for i in range(border_vertices):
        a = 2 * math.pi * i / border_vertices
        r = 7000 + 500 * math.sin(7 * a) + 150 * math.sin(41 * a) + rng.uniform(-10, 10)
        border.append(_ll(r * math.cos(a), r * math.sin(a)))
    zones, parkings = [], []
    for i in range(n_zones):
        cx, cy = rng.uniform(-6000, 6000), rng.uniform(-6000, 6000)
        w, h = rng.uniform(80, 500), rng.uniform(80, 500)
        shape = [_ll(cx - w, cy - h), _ll(cx + w, cy - h), _ll(cx + w, cy + h), _ll(cx - w, cy + h)]
        if i % 5 == 4:
            parkings.append({"id": i + 1, "shape": shape, "capacity": 10})
        else:
            zones.append({"id": i + 1, "shape": shape, "max_speed": rng.randint(6, 25)})
    settings = dict.fromkeys(
        ("trigger_alert", "notify_user", "reduce_vehicle_speed", "play_vehicle_sound"), True
    )
    return {
        "version": f"bench-{n_zones}",
        "border": {"shape": border, "settings": {**settings, "lock_vehicle": True}},
        "speed_zones": zones,
        "virtual_parkings": parkings,
        "vehicle_speed_settings": {
            "default_low_speed": 12,
            "default_medium_speed": 20,
            "default_high_speed": 25,
            "min_battery_to_slow_down": 15,
            "battery_slow_down_speed": 12,
        },
    }


def make_states(n: int, now: float, seed: int = 11) -> list[VehicleState]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        r, a = 8200 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        lon, lat = _ll(r * math.cos(a), r * math.sin(a))
        trip = Trip(f"t{i}", now - 600, last_moved_at=now - 5) if i % 2 else None
        out.append(
            VehicleState(
                f"v{i % 500}",
                lat,
                lon,
                now - 1,
                rng.uniform(3, 20),
                rng.uniform(0, 25),
                rng.randint(5, 100),
                trip is None,
                trip,
            )
        )
    return out


def naive_rate(doc: dict, states: list[VehicleState], seconds: float) -> float:
    """The same membership work with a plain loop over shapely polygons in degrees."""
    polys = [shapely.Polygon(z["shape"]) for z in doc["speed_zones"] + doc["virtual_parkings"]]
    border = shapely.Polygon(doc["border"]["shape"])
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        st = states[n % len(states)]
        p = shapely.Point(st.lon, st.lat)
        inside = border.contains(p)
        limits = [
            z["max_speed"]
            for z, poly in zip(doc["speed_zones"], polys, strict=False)
            if poly.contains(p)
        ]
        _ = (inside, min(limits) if limits else None)
        n += 1
    return n / (time.perf_counter() - t0)


def engine_rate(
    engine: RulesEngine, states: list[VehicleState], now: float, seconds: float, bulk: int = 0
) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        if bulk:
            start = n % len(states)
            batch = states[start : start + bulk]
            engine.evaluate_many(batch, now)
            n += len(batch)
        else:
            engine.evaluate(states[n % len(states)], now)
            n += 1
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    ap.add_argument("--zones", type=int, default=1000)
    ap.add_argument("--border-vertices", type=int, default=4000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    now = 1_717_236_000.0
    doc = make_bundle(args.zones, args.border_vertices)
    t0 = time.perf_counter()
    bundle = load_bundle(doc)
    load_ms = (time.perf_counter() - t0) * 1e3
    engine = RulesEngine(bundle, clock=lambda: now)
    states = make_states(20_000, now)
    engine.evaluate_many(states[:1000], now)  # warm-up
    single = engine_rate(engine, states, now, args.seconds)
    bulk = engine_rate(engine, states, now, args.seconds, bulk=1000)
    naive = naive_rate(doc, states, args.seconds)
    doc2 = {**doc, "version": "bench-swap"}
    swaps = []
    for _ in range(3):
        t0 = time.perf_counter()
        engine.swap(load_bundle(doc2))
        swaps.append((time.perf_counter() - t0) * 1e3)
    t0 = time.perf_counter()
    engine.swap(bundle)
    swap_only_us = (time.perf_counter() - t0) * 1e6
    result = {
        "zones": args.zones,
        "border_vertices": args.border_vertices,
        "engine_evaluate_per_s": round(single),
        "engine_evaluate_many_per_s": round(bulk),
        "naive_loop_per_s": round(naive),
        "speedup_evaluate": round(single / naive, 1),
        "speedup_evaluate_many": round(bulk / naive, 1),
        "bundle_load_ms": round(load_ms, 1),
        "bundle_load_and_swap_ms_median": round(sorted(swaps)[1], 1),
        "swap_only_us": round(swap_only_us, 1),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"rules engine, {args.zones} zones, border {args.border_vertices} vertices")
    print(f"  evaluate (one call per vehicle)   {single:12,.0f} /s  ({single / naive:.1f}x naive)")
    print(f"  evaluate_many (batches of 1000)   {bulk:12,.0f} /s  ({bulk / naive:.1f}x naive)")
    print(f"  baseline: naive shapely loop      {naive:12,.0f} /s")
    print(f"  bundle load+check+swap (median)   {result['bundle_load_and_swap_ms_median']:9.1f} ms")
    print(f"  swap alone                        {swap_only_us:9.1f} us")


if __name__ == "__main__":
    main()
