"""Benchmark of the rules engine: evaluations/s against 1,000 zones and a detailed border.

Prints, for the same run: the engine per call (``evaluate``), the engine in bulk
(``evaluate_many``), a naive loop over shapely polygons doing the same membership work, and
the cost of loading plus swapping a 1,000-zone bundle. ``--json`` prints one JSON object.
The three rates are measured in alternating 0.1 s turns, so a busy machine (shared cores)
slows them alike and the ratios hold; ``--seconds`` is each one's total time.
Usage: .venv/bin/python bench/rules.py [--seconds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from collections.abc import Callable

import shapely

from dockgate.gateway.rules import RulesEngine, Trip, VehicleState, load_bundle

LAT0, LON0 = 45.4642, 9.19
KY = 111_195.0
KX = KY * math.cos(math.radians(LAT0))


def _ll(x: float, y: float) -> list[float]:
    return [LON0 + x / KX, LAT0 + y / KY]


def make_bundle(n_zones: int = 1000, border_vertices: int = 4000, seed: int = 7) -> dict:
    """A city of ~8 km radius: a wiggly border and ``n_zones`` small zones.

    Of the zones, 5 % are GBFS geofencing zones (per vehicle type rules, speed limits, no
    ride-through), 20 % virtual parkings and the rest speed zones. Every rule family is
    configured (border settings, rent settings and timings, pricing for the credit rule,
    speed settings, per-model speed modes), so an evaluation runs the whole decision step.
    ``safety.dwell_s`` is 0: with the clock held still, a border crossing still counts.
    """
    rng = random.Random(seed)
    border = []
    for i in range(border_vertices):
        a = 2 * math.pi * i / border_vertices
        r = 7000 + 500 * math.sin(7 * a) + 150 * math.sin(41 * a) + rng.uniform(-10, 10)
        border.append(_ll(r * math.cos(a), r * math.sin(a)))
    zones, parkings, features = [], [], []
    for i in range(n_zones):
        cx, cy = rng.uniform(-6000, 6000), rng.uniform(-6000, 6000)
        w, h = rng.uniform(80, 500), rng.uniform(80, 500)
        shape = [_ll(cx - w, cy - h), _ll(cx + w, cy - h), _ll(cx + w, cy + h), _ll(cx - w, cy + h)]
        if i % 20 == 19:
            rules = [
                {
                    "vehicle_type_ids": ["scooter"],
                    "ride_start_allowed": False,
                    "ride_end_allowed": False,
                    "ride_through_allowed": i % 40 != 39,
                    "maximum_speed_kph": rng.randint(6, 20),
                },
                {
                    "ride_start_allowed": True,
                    "ride_end_allowed": True,
                    "ride_through_allowed": True,
                },
            ]
            geometry = {"type": "MultiPolygon", "coordinates": [[[*shape, shape[0]]]]}
            features.append(
                {
                    "type": "Feature",
                    "geometry": geometry,
                    "properties": {
                        "name": [{"text": f"gbfs-{i}", "language": "en"}],
                        "rules": rules,
                    },
                }
            )
        elif i % 5 == 4:
            parkings.append({"id": i + 1, "shape": shape, "capacity": 10})
        else:
            zones.append({"id": i + 1, "shape": shape, "max_speed": rng.randint(6, 25)})
    settings = dict.fromkeys(
        ("trigger_alert", "notify_user", "reduce_vehicle_speed", "play_vehicle_sound"), True
    )
    return {
        "version": f"bench-{n_zones}",
        "timezone": "Europe/Rome",
        "border": {"shape": border, "settings": {**settings, "lock_vehicle": True}},
        "speed_zones": zones,
        "virtual_parkings": parkings,
        "rent_settings": {
            "min_battery_to_rent": 20,
            "max_simultaneous_rented_vehicle": 2,
            "trip_on_hold": True,
            "credit_depletion_auto_lock": True,
            "min_battery_to_auto_lock": 5,
        },
        "rent_timings": {
            "trip_too_long_notifications": 7200,
            "trip_too_long_notifications_frequency": 1800,
            "vehicle_stolen": 86400,
            "trip_auto_pause": 900,
            "trip_max_pause": 3600,
            "trip_auto_lock": 28800,
        },
        "vehicle_speed_settings": {
            "default_low_speed": 12,
            "default_medium_speed": 20,
            "default_high_speed": 25,
            "min_battery_to_slow_down": 15,
            "battery_slow_down_speed": 12,
        },
        "vehicle_settings": [
            {"model_id": 1, "auto_light": True, "speed_mode": 1},
            {"model_id": 2, "auto_light": False, "speed_mode": 2},
            {"model_id": 3, "auto_light": True, "speed_mode": None},
        ],
        "pricing": [
            {
                "start_dow": 0,
                "start_hod": "00:00:00",
                "end_dow": 0,
                "end_hod": "00:00:00",
                "unlock_price": 1.0,
                "unlock_included_time": 0,
                "use_per_minute_price": 0.25,
                "on_hold_price": 0.05,
            }
        ],
        "safety": {"dwell_s": 0},
        "gbfs": {
            "last_updated": "2024-06-01T00:00:00Z",
            "ttl": 0,
            "version": "3.0",
            "data": {
                "geofencing_zones": {"type": "FeatureCollection", "features": features},
                "global_rules": [
                    {
                        "ride_start_allowed": True,
                        "ride_end_allowed": True,
                        "ride_through_allowed": True,
                    }
                ],
            },
        },
    }


def make_states(n: int, now: float, seed: int = 11, fleet: int = 500) -> list[VehicleState]:
    """``n`` reports of a ``fleet`` riding about the city, in report order.

    Each vehicle keeps its id, trip, model and type, and moves between reports as a vehicle
    does between two telemetry messages (up to ~35 m at 25 km/h, 5 s apart), turning a
    little each time; about one in three is parked and locked, one in six is on a trip that
    has run for hours (too-long notifications, credit running out).
    """
    rng = random.Random(seed)
    fleet_state = []
    for v in range(fleet):
        r, a = 8200 * math.sqrt(rng.random()), rng.uniform(0, 2 * math.pi)
        on_trip = v % 3 != 0
        started = now - (rng.uniform(7300, 20000) if v % 6 == 1 else rng.uniform(60, 1800))
        trip = Trip(f"t{v}", started, credit=rng.uniform(2, 40), last_moved_at=now - 5)
        fleet_state.append(
            {
                "x": r * math.cos(a),
                "y": r * math.sin(a),
                "heading": rng.uniform(0, 2 * math.pi),
                "speed": rng.uniform(8, 25) if on_trip else 0.0,
                "trip": trip if on_trip else None,
                "model": 1 + v % 3,
                "type": "scooter" if v % 2 else "bike",
                "battery": rng.randint(3, 100),
            }
        )
    out = []
    for i in range(n):
        v = i % fleet
        f = fleet_state[v]
        f["heading"] += rng.uniform(-0.3, 0.3)
        step = f["speed"] / 3.6 * 5
        f["x"] += step * math.cos(f["heading"])
        f["y"] += step * math.sin(f["heading"])
        lon, lat = _ll(f["x"], f["y"])
        out.append(
            VehicleState(
                f"v{v}",
                lat,
                lon,
                now - 1,
                rng.uniform(3, 20),
                max(0.0, f["speed"] + rng.uniform(-3, 3)) if f["trip"] else rng.uniform(0, 1),
                f["battery"],
                f["trip"] is None,
                f["trip"],
                f["type"],
                f["model"],
            )
        )
    return out


def naive_loop(doc: dict) -> Callable[[list[VehicleState], int, float], tuple[int, float]]:
    """The same membership work with a plain loop over shapely polygons in degrees.

    Every zone (speed zones, parkings, GBFS zones) and the border are tested for each
    vehicle, and the lowest zone speed limit is taken, as the engine's spatial step does.
    """
    zones = [(shapely.Polygon(z["shape"]), z["max_speed"]) for z in doc["speed_zones"]]
    zones += [(shapely.Polygon(z["shape"]), None) for z in doc["virtual_parkings"]]
    for f in doc["gbfs"]["data"]["geofencing_zones"]["features"]:
        limit = f["properties"]["rules"][0].get("maximum_speed_kph")
        zones.append(
            (
                shapely.MultiPolygon([shapely.Polygon(p[0]) for p in f["geometry"]["coordinates"]]),
                limit,
            )
        )
    border = shapely.Polygon(doc["border"]["shape"])

    def run(states: list[VehicleState], n: int, seconds: float) -> tuple[int, float]:
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            st = states[(n + k) % len(states)]
            p = shapely.Point(st.lon, st.lat)
            inside = border.contains(p)
            hits = [limit for poly, limit in zones if poly.contains(p)]
            limits = [x for x in hits if x is not None]
            _ = (inside, min(limits) if limits else None)
            k += 1
        return k, time.perf_counter() - t0

    return run


def engine_loop(
    engine: RulesEngine, now: float, bulk: int = 0
) -> Callable[[list[VehicleState], int, float], tuple[int, float]]:
    """Evaluate states from position ``n`` on for ``seconds``: one call each, or in batches."""

    def run(states: list[VehicleState], n: int, seconds: float) -> tuple[int, float]:
        k, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            if bulk:
                start = (n + k) % len(states)
                batch = states[start : start + bulk]
                engine.evaluate_many(batch, now)
                k += len(batch)
            else:
                engine.evaluate(states[(n + k) % len(states)], now)
                k += 1
        return k, time.perf_counter() - t0

    return run


def interleaved(
    loops: dict[str, Callable[[list[VehicleState], int, float], tuple[int, float]]],
    states: list[VehicleState],
    seconds: float,
    slice_s: float = 0.1,
) -> dict[str, float]:
    """Rates of several loops measured in turns of ``slice_s``, so that a shared, busy
    machine slows them alike and their ratios hold; each loop gets ``seconds`` in all.
    Every loop walks the states in order, continuing where its last turn stopped."""
    done = dict.fromkeys(loops, 0)
    spent = dict.fromkeys(loops, 0.0)
    for _ in range(max(1, round(seconds / slice_s))):
        for name, run in loops.items():
            k, dt = run(states, done[name], slice_s)
            done[name] += k
            spent[name] += dt
    return {name: done[name] / spent[name] for name in loops}


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
    # The first pass fills the bundle's lookup caches (grid cells, places); it is reported
    # apart, and the rates below are the steady state of vehicles riding the same city.
    t0 = time.perf_counter()
    engine.evaluate_many(states, now)
    first = len(states) / (time.perf_counter() - t0)
    rates = interleaved(
        {
            # Each loop has its own engine, so each sees every vehicle's reports in order.
            "evaluate": engine_loop(engine, now),
            "evaluate_many": engine_loop(RulesEngine(bundle, clock=lambda: now), now, bulk=1000),
            "naive": naive_loop(doc),
        },
        states,
        args.seconds,
    )
    single, bulk, naive = rates["evaluate"], rates["evaluate_many"], rates["naive"]
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
        "engine_first_pass_per_s": round(first),
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
    print(f"  first pass, cold caches (bulk)    {first:12,.0f} /s")
    print(f"  bundle load+check+swap (median)   {result['bundle_load_and_swap_ms_median']:9.1f} ms")
    print(f"  swap alone                        {swap_only_us:9.1f} us")


if __name__ == "__main__":
    main()
