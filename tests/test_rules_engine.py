"""The engine: each rule, GPS safety, alert lifecycle, and property tests."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockgate.gateway.rules import (
    AlertAction,
    AlertType,
    CommandKind,
    RulesEngine,
    Trip,
    VehicleState,
    load_bundle,
)

DEMO = Path(__file__).resolve().parents[1] / "config" / "rules" / "demo-milano.json"
BUNDLE = load_bundle(DEMO)
NOW = 1_717_236_000.0  # a Saturday, 10:00 in Milan
LAT0, LON0 = 45.4642, 9.19
KY = 111_195.0
KX = KY * math.cos(math.radians(LAT0))


def ll(x: float, y: float) -> tuple[float, float]:
    return LAT0 + y / KY, LON0 + x / KX


def state(x: float = 2000.0, y: float = -1500.0, **kw) -> VehicleState:
    lat, lon = ll(x, y)
    base = dict(
        vehicle_id="v1",
        lat=lat,
        lon=lon,
        fix_time=NOW,
        accuracy_m=5.0,
        speed_kph=15.0,
        battery=80,
        locked=False,
        trip=Trip("t1", NOW - 60),
    )
    base.update(kw)
    return VehicleState(**base)


def engine() -> RulesEngine:
    return RulesEngine(BUNDLE, clock=lambda: NOW)


def test_speed_zone_and_effective_minimum() -> None:
    e = engine()
    d = e.evaluate(state(0, 0))
    assert d.max_speed_kph == 6 and d.limits["speed_zone:1"] == 6 and d.limits["speed_zone:2"] == 15
    assert d.commands[0].kind is CommandKind.SET_MAX_SPEED and d.commands[0].max_speed_kph == 6
    assert d.commands[0].inputs["lat"] == state(0, 0).lat
    # Same limit again: no repeated command.
    assert CommandKind.SET_MAX_SPEED not in e.evaluate(state(0, 0)).command_kinds()
    d = e.evaluate(state(700, 0))
    assert d.max_speed_kph == 15


def test_battery_slow_down_and_speed_mode() -> None:
    d = engine().evaluate(state(battery=15, model_id=2))
    assert d.limits["battery_slow_down"] == 12 and d.limits["speed_mode"] == 20
    assert d.max_speed_kph == 12


def test_border_exit_with_dwell_sound_alert_slow_then_lock() -> None:
    e = engine()
    out = state(0, -4600, speed_kph=15)
    assert e.evaluate(out, NOW).inside_network is True  # dwell not yet elapsed
    d = e.evaluate(replace(out, fix_time=NOW + 6), NOW + 6)
    assert d.inside_network is False
    kinds = d.command_kinds()
    assert CommandKind.PLAY_SOUND in kinds and CommandKind.LOCK not in kinds
    assert d.max_speed_kph == 6 and "border.reduce_vehicle_speed" in d.limits
    assert [a.alert_type for a in d.alerts if a.action is AlertAction.RAISE] == [
        AlertType.VEHICLE_OUT_OF_NETWORK_AREA
    ]
    assert d.notifications[0].to_rider
    stopped = e.evaluate(replace(out, fix_time=NOW + 10, speed_kph=0.0), NOW + 10)
    lock = [c for c in stopped.commands if c.kind is CommandKind.LOCK]
    assert lock and lock[0].reason == "border.lock_vehicle" and lock[0].inputs["speed_kph"] == 0


def test_stale_or_inaccurate_fix_is_not_acted_on() -> None:
    e = engine()
    e.evaluate(state(0, 0))
    stale = e.evaluate(state(0, -6000, fix_time=NOW - 31, speed_kph=0), NOW)
    assert not stale.position_used and stale.inside_network is True
    assert CommandKind.LOCK not in stale.command_kinds()
    vague = e.evaluate(state(0, -6000, accuracy_m=500, speed_kph=0), NOW + 20)
    assert not vague.position_used


def test_battery_auto_lock_ends_trip_when_stationary() -> None:
    e = engine()
    moving = e.evaluate(state(battery=4, speed_kph=12))
    assert CommandKind.LOCK not in moving.command_kinds() and moving.max_speed_kph == 6
    d = e.evaluate(state(battery=4, speed_kph=0), NOW + 1)
    assert d.command_kinds()[-2:] == [CommandKind.LOCK, CommandKind.END_TRIP]


def test_credit_depletion() -> None:
    # 1.00 unlock + 0.25/min: 2.00 of credit lasts 4 minutes.
    ok = engine().evaluate(state(speed_kph=0, trip=Trip("t", NOW - 200, credit=2.0)))
    assert CommandKind.LOCK not in ok.command_kinds()
    d = engine().evaluate(state(speed_kph=0, trip=Trip("t", NOW - 241, credit=2.0)))
    lock = next(c for c in d.commands if c.kind is CommandKind.LOCK)
    assert "rent_settings.credit_depletion_auto_lock" in lock.inputs["lock_reasons"]
    assert CommandKind.END_TRIP in d.command_kinds()


def test_trip_timers() -> None:
    e = engine()
    still = Trip("t", NOW - 1000, last_moved_at=NOW - 901)
    assert CommandKind.TRIP_HOLD in e.evaluate(state(speed_kph=0, trip=still)).command_kinds()
    held = Trip("t2", NOW - 5000, on_hold=True, hold_started_at=NOW - 3601)
    assert (
        CommandKind.END_TRIP
        in e.evaluate(state(speed_kph=0, locked=True, trip=held)).command_kinds()
    )
    long_trip = Trip("t3", NOW - 7300)
    kinds = [n.kind.value for n in e.evaluate(state(trip=long_trip)).notifications]
    assert kinds == ["trip-too-long"]
    assert not e.evaluate(state(trip=long_trip), NOW + 60).notifications  # frequency
    assert e.evaluate(state(trip=long_trip), NOW + 1800).notifications
    stolen = e.evaluate(state(trip=Trip("t4", NOW - 86400)))
    assert "vehicle-stolen" in [n.kind.value for n in stolen.notifications]
    capped = e.evaluate(state(speed_kph=0, trip=Trip("t5", NOW - 28800)))
    assert CommandKind.END_TRIP in capped.command_kinds()


def test_unlock_for_trip_and_alerts_without_trip() -> None:
    e = engine()
    d = e.evaluate(state(locked=True, speed_kph=0, model_id=1))
    unlock = next(c for c in d.commands if c.kind is CommandKind.UNLOCK)
    assert unlock.auto_light is True
    d = e.evaluate(state(vehicle_id="v9", locked=True, trip=None, speed_kph=14))
    assert [a.alert_type for a in d.alerts] == [AlertType.VEHICLE_ILLEGAL_MOVING]
    d = e.evaluate(state(vehicle_id="v8", locked=False, trip=None, speed_kph=0))
    assert [a.alert_type for a in d.alerts] == [AlertType.UNEXPECTED_UNLOCK]


def test_check_rent() -> None:
    e = engine()
    assert e.check_rent(state(trip=None, battery=50), 0) == (True, [])
    ok, why = e.check_rent(state(trip=None, battery=14), 2)
    assert not ok and why == [
        "rent_settings.min_battery_to_rent",
        "rent_settings.max_simultaneous_rented_vehicle",
    ]


def test_alert_clears_after_absence_and_swap_is_used() -> None:
    e = engine()
    out = state(0, -4600, speed_kph=0, locked=True)
    for t in (0, 6):
        d = e.evaluate(replace(out, fix_time=NOW + t), NOW + t)
    inside = state(0, 0, speed_kph=0, locked=True)
    for t in (20, 26, 100):
        d = e.evaluate(replace(inside, fix_time=NOW + t), NOW + t)
    assert not d.alerts
    d = e.evaluate(replace(inside, fix_time=NOW + 300), NOW + 300)
    assert [a.action for a in d.alerts] == [AlertAction.CLEAR]
    doc = json.loads(DEMO.read_text())
    doc["version"] = "v2"
    doc["speed_zones"][0]["max_speed"] = 8
    e.swap(load_bundle(doc))
    assert e.evaluate(state(0, 0)).max_speed_kph == 8 and e.bundle.version == "v2"


def test_evaluate_many_matches_evaluate() -> None:
    states = [
        state(x, y, vehicle_id=f"v{i}")
        for i, (x, y) in enumerate([(0, 0), (700, 0), (0, -4600), (2000, 0)])
    ]
    states.append(state(vehicle_id="stale", fix_time=NOW - 100))
    a = [engine().evaluate(s) for s in states]
    e = engine()
    b = e.evaluate_many(states)
    assert [(d.max_speed_kph, d.zones, d.inside_network) for d in a] == [
        (d.max_speed_kph, d.zones, d.inside_network) for d in b
    ]


coords = st.tuples(st.floats(-5000, 5000), st.floats(-5000, 5000))
vstate = st.builds(
    lambda xy, spd, bat, acc, locked, trip, model: state(
        xy[0],
        xy[1],
        speed_kph=spd,
        battery=bat,
        accuracy_m=acc,
        locked=locked,
        trip=Trip("t", NOW - trip) if trip is not None else None,
        model_id=model,
    ),
    coords,
    st.floats(0, 40),
    st.integers(0, 100),
    st.floats(0, 150),
    st.booleans(),
    st.one_of(st.none(), st.floats(0, 40000)),
    st.sampled_from([None, 1, 2]),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(vstate, min_size=1, max_size=15))
def test_property_deterministic(states: list[VehicleState]) -> None:
    def run() -> list:
        e = engine()
        return [e.evaluate(replace(s, fix_time=NOW + i), NOW + i) for i, s in enumerate(states)]

    assert run() == run()


@settings(max_examples=60, deadline=None)
@given(st.lists(vstate, min_size=1, max_size=15))
def test_property_speed_and_lock_safety(states: list[VehicleState]) -> None:
    e = engine()
    walking = BUNDLE.safety.walking_speed_kph
    for i, s in enumerate(states):
        d = e.evaluate(replace(s, fix_time=NOW + i), NOW + i)
        if d.max_speed_kph is not None:
            assert all(d.max_speed_kph <= v for v in d.limits.values())
        for c in d.commands:
            if c.kind is CommandKind.LOCK:
                assert s.speed_kph <= walking


@settings(max_examples=40, deadline=None)
@given(
    st.floats(3, 30),
    st.lists(st.floats(-1, 1), min_size=200, max_size=200),
    st.floats(-20, 20),
)
def test_property_border_ride_raises_at_most_one_alert(acc: float, noise: list, off: float):
    """Ride along the border (north-west edge) with GPS noise up to the reported accuracy."""
    e = engine()
    border = BUNDLE.border
    raises = 0
    for i, n in enumerate(noise):
        # Walk along the projected boundary, offset `off` m, plus noise <= accuracy.
        p = border.boundary.interpolate(i * 15.0)
        q = border.boundary.interpolate(i * 15.0 + 1.0)
        dx, dy = q.x - p.x, q.y - p.y
        norm = math.hypot(dx, dy) or 1.0
        shift = off + n * acc
        x, y = p.x - dy / norm * shift, p.y + dx / norm * shift
        lat = BUNDLE.projection.lat0 + y / BUNDLE.projection.ky
        lon = BUNDLE.projection.lon0 + x / BUNDLE.projection.kx
        t = NOW + i * 2
        s = VehicleState("rider", lat, lon, t, acc, 15.0, 80, False, Trip("t", NOW))
        d = e.evaluate(s, t)
        raises += sum(
            1
            for a in d.alerts
            if a.alert_type is AlertType.VEHICLE_OUT_OF_NETWORK_AREA
            and a.action is AlertAction.RAISE
        )
    assert raises <= 1


@settings(max_examples=200, deadline=None)
@given(st.floats(-6000, 6000), st.floats(-6000, 6000))
def test_property_grid_lookup_matches_exact_geometry(x: float, y: float) -> None:
    """The engine's cached grid answers as the exact geometry does: the same zones, in the
    same order, and the border distance clamped to the hysteresis margin."""
    hits, d = BUNDLE.plan.grid.lookup(x, y)
    assert list(hits) == BUNDLE.zones.at(x, y)
    m = BUNDLE.border.margin_m
    assert d == pytest.approx(max(-m, min(m, BUNDLE.border.exact(x, y))), abs=1e-6)


def _near_border() -> st.SearchStrategy[tuple[float, float]]:
    """Points within ~150 m of the demo border (where the distance is deferred)."""
    ring = list(BUNDLE.border.boundary.coords)
    return st.tuples(
        st.integers(0, len(ring) - 2), st.floats(0, 1), st.floats(-150, 150), st.floats(-150, 150)
    ).map(
        lambda t: (
            ring[t[0]][0] + t[1] * (ring[t[0] + 1][0] - ring[t[0]][0]) + t[2],
            ring[t[0]][1] + t[1] * (ring[t[0] + 1][1] - ring[t[0]][1]) + t[3],
        )
    )


@settings(max_examples=300, deadline=None)
@given(_near_border())
def test_property_deferred_border_distance_bounds_the_exact_one(xy: tuple[float, float]) -> None:
    """``locate`` defers the border distance near the border; the cell's side and gap then
    bound it (so a hysteresis comparison they settle is the exact one's), and ``exact``
    gives what ``lookup`` gives."""
    x, y = xy
    grid = BUNDLE.plan.grid
    hits, d = grid.lookup(x, y)
    hits2, d2, cell = grid.locate(x, y)
    assert hits2 == hits
    assert grid.exact(x, y, cell) == pytest.approx(d, abs=1e-9)
    if d2 is None:
        side, gap = cell.border_side, cell.border_gap
        if side:
            assert (d > 0) == (side > 0) and abs(d) >= gap - 1e-9
    else:
        assert d2 == d


def test_grid_lookup_on_zone_edges_and_corners() -> None:
    # Points exactly on a zone's edge count as in it (as STRtree "intersects" does).
    zone = BUNDLE.zones.geoms[0]
    for px, py in list(zone.exterior.coords)[:4]:
        for dx, dy in ((0, 0), (0.01, 0.01), (-0.01, -0.01)):
            hits, _ = BUNDLE.plan.grid.lookup(px + dx, py + dy)
            assert list(hits) == BUNDLE.zones.at(px + dx, py + dy)


@settings(max_examples=100, deadline=None)
@given(
    st.floats(0.5, 20),
    st.floats(0, 3000),
    st.floats(0, 1200),
    st.booleans(),
)
def test_property_credit_lock_matches_the_trip_cost(credit, age, hold, on_hold) -> None:
    """The credit rule locks exactly when the running cost reaches the rider's credit."""
    from dockgate.gateway.rules.pricing import pricing_at, trip_cost

    trip = Trip(
        "t",
        NOW - age,
        credit=credit,
        on_hold=on_hold,
        hold_started_at=NOW - min(hold, age) / 2 if on_hold else None,
        hold_seconds=min(hold, age) / 2,
    )
    d = engine().evaluate(state(speed_kph=0, trip=trip))
    price = pricing_at(BUNDLE.config.pricing, trip.started_at, BUNDLE.timezone)
    held = trip.hold_seconds + (NOW - trip.hold_started_at if on_hold else 0.0)
    due = trip_cost(price, age - held, held) >= credit
    locks = [c for c in d.commands if c.kind is CommandKind.LOCK]
    fired = (
        bool(locks)
        and "rent_settings.credit_depletion_auto_lock" in locks[0].inputs["lock_reasons"]
    )
    assert fired == due


def test_evaluate_many_pauses_and_restores_the_collector() -> None:
    import gc

    e = engine()
    assert gc.isenabled()
    e.evaluate_many([state(vehicle_id=f"v{i}") for i in range(5)])
    assert gc.isenabled()
    gc.disable()
    try:
        e.evaluate_many([state()])
        assert not gc.isenabled()
    finally:
        gc.enable()


def at_xy(x: float, y: float, **kw) -> VehicleState:
    """A state at (x, y) metres in the bundle's own frame."""
    pr = BUNDLE.projection
    return state(lat=float(pr.lat0 + y / pr.ky), lon=float(pr.lon0 + x / pr.kx), **kw)


def test_speed_zone_hysteresis_enter_at_once_leave_beyond_the_buffer() -> None:
    # Zone 1 (6 km/h) lies inside zone 2 (15 km/h). Walk east across zone 1's east edge,
    # with a 10 m accuracy.
    _, ymin, east, ymax = BUNDLE.zones.geoms[0].bounds
    y = (ymin + ymax) / 2
    e = engine()
    assert e.evaluate(at_xy(east - 30, y, accuracy_m=10)).max_speed_kph == 6  # inside
    # Just outside, within the fix's accuracy: the zone still holds.
    d = e.evaluate(at_xy(east + 8, y, accuracy_m=10), NOW + 1)
    assert d.max_speed_kph == 6 and "speed_zone:1" in d.limits
    # Beyond the accuracy: released.
    d = e.evaluate(at_xy(east + 15, y, accuracy_m=10), NOW + 2)
    assert d.max_speed_kph == 15 and "speed_zone:1" not in d.limits
    # Entering again applies at once, even by a metre.
    assert e.evaluate(at_xy(east - 1, y, accuracy_m=10), NOW + 3).max_speed_kph == 6
    # A fresh vehicle just outside was never in: no hold.
    assert engine().evaluate(at_xy(east + 8, y, accuracy_m=10)).max_speed_kph == 15


@settings(max_examples=40, deadline=None)
@given(st.floats(3, 30), st.lists(st.floats(-1, 1), min_size=60, max_size=60))
def test_property_ride_along_a_speed_zone_edge_does_not_flap(acc: float, noise: list) -> None:
    """Riding along zone 1's east edge, 1 m outside, with noise within the accuracy: the
    limit may drop to the zone's on entry, but never flips back and forth."""
    _, ymin, east, _ = BUNDLE.zones.geoms[0].bounds
    e = engine()
    changes = []
    for i, n in enumerate(noise):
        # 1 m outside plus noise: never farther out than the buffer (the fix's accuracy).
        x = east + 1 + n * (max(acc, BUNDLE.safety.min_buffer_m) - 1.5)
        d = e.evaluate(at_xy(x, ymin + 50 + i * 3, accuracy_m=acc), NOW + i)
        changes += [c.max_speed_kph for c in d.commands if c.kind is CommandKind.SET_MAX_SPEED]
    assert len(changes) <= 2  # the first command, then at most one drop to 6


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-600, 4000), min_size=1, max_size=25),
    st.floats(0, 30000),
    st.sampled_from([None, 2.0, 5.0, 60.0]),
    st.one_of(st.none(), st.floats(0, 3000)),
    st.lists(st.sampled_from([0.0, 15.0]), min_size=25, max_size=25),
)
def test_property_trip_rules_skipped_while_quiet_decide_the_same(
    steps: list[float], age: float, credit: float | None, still: float | None, speeds: list
) -> None:
    """Off hold, the trip rules are not run again before they can change; with the clock
    moving forward, back, or standing still, the decisions are those of running them on
    every report."""
    trip = Trip("t", NOW - age, credit=credit, last_moved_at=None if still is None else NOW - still)
    cached, fresh = engine(), engine()
    now = NOW
    for dt, speed in zip(steps, speeds, strict=False):
        now += dt
        s = state(speed_kph=speed, fix_time=now, trip=trip)
        a = cached.evaluate(s, now)
        track = fresh._tracks.get("v1")
        if track is not None:
            track.quiet_trip = None  # forget when the trip rules may next change
        b = fresh.evaluate(s, now)
        assert a == b


def test_decisions_is_a_frozen_slotted_dataclass() -> None:
    d = engine().evaluate(state())
    assert type(d).__name__ == "Decisions" and not hasattr(d, "__dict__")
    with pytest.raises(AttributeError):
        d.at = 0.0  # type: ignore[misc]
    assert replace(d, at=1.0).at == 1.0 and replace(d, at=1.0) != d


def test_evaluate_many_decides_as_evaluate_over_a_ride() -> None:
    """Whole decisions, report after report, the batch path (cell keys in bulk, one or two
    dict lookups) against the single one; unusable fixes (NaN, infinite) raise no warning."""
    import random
    import warnings

    rng = random.Random(5)
    single, bulk = engine(), engine()
    fleet = [(rng.uniform(-5000, 5000), rng.uniform(-5000, 5000)) for _ in range(60)]
    for step in range(12):
        now = NOW + 7 * step
        batch = []
        for i, (x, y) in enumerate(fleet):
            x, y = x + rng.uniform(-40, 40), y + rng.uniform(-40, 40)
            fleet[i] = (x, y)
            batch.append(
                state(
                    x,
                    y,
                    vehicle_id=f"v{i}",
                    fix_time=now,
                    accuracy_m=rng.uniform(1, 30),
                    speed_kph=rng.choice([0.0, 12.0, 24.0]),
                    locked=i % 4 == 0,
                    trip=None if i % 4 == 0 else Trip(f"t{i}", NOW - 100 * i, credit=20.0),
                )
            )
        batch.append(state(vehicle_id="nan", lat=math.nan, fix_time=now))
        batch.append(state(vehicle_id="inf", lon=math.inf, fix_time=now))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            got = bulk.evaluate_many(batch, now)
        assert got == [single.evaluate(s, now) for s in batch]
        assert not got[-1].position_used and not got[-2].position_used
