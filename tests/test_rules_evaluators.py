"""Each rule family of the engine on its own: border, speed zones and limits, battery,
virtual parkings, trip timers and the credit rule, locking, fleet alerts, and the draft that
collects decisions. Every evaluator runs against a real compiled bundle (``Plan``), a real
alert book and real parking counts; only its own memory is handed in."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError, fields, replace
from typing import Any

import pytest

from dockgate.gateway.rules import (
    AlertAction,
    AlertBook,
    AlertSeverity,
    AlertType,
    CommandKind,
    RulesEngine,
)
from dockgate.gateway.rules import NotificationKind as NK
from dockgate.gateway.rules.battery import BATTERY_LOCK, battery_limit, battery_locks
from dockgate.gateway.rules.border import (
    BorderMemory,
    border_alert,
    border_distance,
    border_notices,
    reduced_limits,
    track_border,
)
from dockgate.gateway.rules.bundle import load_bundle
from dockgate.gateway.rules.draft import Draft, decision_inputs
from dockgate.gateway.rules.locking import (
    LOCK_RESEND_S,
    LockMemory,
    lock_decisions,
    lock_settled,
    pending_lock,
)
from dockgate.gateway.rules.parking import (
    ParkingCounts,
    ParkingMemory,
    ParkingRoom,
    judge_ride_end,
    parking_note,
    parking_verdict,
)
from dockgate.gateway.rules.plan import GridCell, Plan, ZoneRules
from dockgate.gateway.rules.pricing import trip_cost, trip_cost_now
from dockgate.gateway.rules.speed import (
    LimitsMemory,
    hold_speed_zones,
    speed_command,
    vehicle_limits,
)
from dockgate.gateway.rules.state import Trip, VehicleState
from dockgate.gateway.rules.trip_rules import (
    CREDIT_LOCK,
    TIME_LOCK,
    TimerEvent,
    TripMemory,
    credit_used_up,
    quiet_until,
    run_trip_rules,
    timer_decisions,
    trip_timers,
)
from dockgate.gateway.rules.vehicle_alerts import alerts_settled, moving_alert, unlocked_alert
from dockgate.gateway.rules.zones import ZoneMemory, ride_through_notice, zone_rules_at

NOW = 1_717_236_000.0
LAT0, LON0 = 45.0, 9.0
KY = math.radians(1) * 6_371_008.8
KX = KY * math.cos(math.radians(LAT0))


def _lonlat(x: float, y: float) -> list[float]:
    return [LON0 + x / KX, LAT0 + y / KY]


def _box(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [_lonlat(x0, y0), _lonlat(x1, y0), _lonlat(x1, y1), _lonlat(x0, y1)]


def _doc(**over: Any) -> dict[str, Any]:
    """A 2 km square network: speed zone 1 (10 km/h) in the middle, parking 7 (2 places)
    to the north-east, a GBFS zone to the west that scooters may not ride through."""
    gbfs_zone = {
        "type": "Feature",
        "geometry": {
            "type": "MultiPolygon",
            "coordinates": [[[*_box(-800, -100, -600, 100), _lonlat(-800, -100)]]],
        },
        "properties": {
            "name": [{"text": "no-through", "language": "en"}],
            "rules": [
                {
                    "vehicle_type_ids": ["scooter"],
                    "ride_start_allowed": False,
                    "ride_end_allowed": False,
                    "ride_through_allowed": False,
                    "maximum_speed_kph": 8,
                }
            ],
        },
    }
    allowed = {"ride_start_allowed": True, "ride_end_allowed": True, "ride_through_allowed": True}
    doc: dict[str, Any] = {
        "version": "evaluators-1",
        "timezone": "Europe/Rome",
        "border": {
            "shape": _box(-1000, -1000, 1000, 1000),
            "settings": dict.fromkeys(
                (
                    "trigger_alert",
                    "notify_user",
                    "reduce_vehicle_speed",
                    "play_vehicle_sound",
                    "lock_vehicle",
                ),
                True,
            ),
        },
        "speed_zones": [{"id": 1, "shape": _box(-300, -300, 300, 300), "max_speed": 10}],
        "virtual_parkings": [{"id": 7, "shape": _box(400, 400, 500, 500), "capacity": 2}],
        "rent_settings": {
            "min_battery_to_rent": 15,
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
        "vehicle_settings": [{"model_id": 2, "auto_light": True, "speed_mode": 2}],
        "pricing": [
            {
                "start_dow": 0,
                "start_hod": "00:00:00",
                "end_dow": 0,
                "end_hod": "00:00:00",
                "unlock_price": 1.0,
                "unlock_included_time": 0,
                "use_per_minute_price": 0.25,
                "on_hold_price": 0.1,
            }
        ],
        "safety": {"dwell_s": 5, "min_buffer_m": 5},
        "gbfs": {
            "last_updated": "2024-06-01T00:00:00Z",
            "ttl": 0,
            "version": "3.0",
            "data": {
                "geofencing_zones": {"type": "FeatureCollection", "features": [gbfs_zone]},
                "global_rules": [allowed],
            },
        },
    }
    doc.update(over)
    return doc


BUNDLE = load_bundle(_doc())
PLAN: Plan = BUNDLE.plan  # type: ignore[assignment]


def at(x: float, y: float, **kw: Any) -> VehicleState:
    """A report at (x, y) metres in the bundle's frame: on a trip, moving, fresh fix."""
    base: dict[str, Any] = dict(
        vehicle_id="v1",
        lat=PLAN.lat0 + y / PLAN.ky,
        lon=PLAN.lon0 + x / PLAN.kx,
        fix_time=NOW,
        accuracy_m=5.0,
        speed_kph=15.0,
        battery=80,
        locked=False,
        trip=Trip("t1", NOW - 60, credit=20.0),
    )
    base.update(kw)
    return VehicleState(**base)


def cell_of(st: VehicleState) -> GridCell:
    return PLAN.grid.cell(*PLAN.xy(st.lat, st.lon))


def draft(st: VehicleState, now: float = NOW, **kw: Any) -> Draft:
    limits = kw.pop("limits", {})
    return Draft(
        PLAN.version, st, now, kw.pop("due_price", None), limits, kw.pop("max_speed", None)
    )


# -- records ----------------------------------------------------------------------------


def test_engine_has_no_single_decide_function() -> None:
    assert not hasattr(RulesEngine, "_decide")


@pytest.mark.parametrize(
    "record",
    [
        cell_of(at(0, 0)),
        ZoneRules({}, (), None, None, (), ()),
        TimerEvent(NK.TRIP_TOO_LONG, "r"),
        ParkingRoom(1, 2, 0, "observed"),
    ],
)
def test_records_are_frozen_and_slotted(record: object) -> None:
    assert not hasattr(record, "__dict__")
    with pytest.raises(FrozenInstanceError):
        setattr(record, fields(record)[0].name, None)  # type: ignore[arg-type]


# -- border ---------------------------------------------------------------------------


def test_side_changes_only_beyond_the_buffer_and_after_the_dwell() -> None:
    mem = BorderMemory()

    def step(x: float, t: float) -> bool:
        st = at(x, 0, fix_time=t)
        return track_border(PLAN, mem, st, cell_of(st), 5.0, t)

    assert step(1003, NOW) is False and not mem.outside  # 3 m out: within the buffer
    assert step(1020, NOW + 1) is False and mem.candidate_since == NOW + 1
    assert step(1020, NOW + 3) is False and not mem.outside  # dwell not yet over
    assert step(1020, NOW + 6) is True and mem.outside and mem.candidate_since is None
    assert step(1020, NOW + 7) is False  # left once, not again
    assert step(997, NOW + 8) is False and mem.outside  # 3 m in: still outside
    assert step(980, NOW + 9) is False and mem.candidate_since == NOW + 9
    assert step(1020, NOW + 10) is False and mem.candidate_since is None  # back out: reset
    assert step(980, NOW + 11) is False and step(980, NOW + 16) is False
    assert not mem.outside  # back inside after the dwell; entering is not "left"


@pytest.mark.parametrize("x", [960.0, 990.0, 994.0, 996.0, 999.0, 1001.0, 1004.0, 1030.0])
@pytest.mark.parametrize("buffer", [5.0, 20.0])
def test_border_distance_bound_decides_as_the_exact_distance(x: float, buffer: float) -> None:
    st = at(x, 123.0)
    cell = cell_of(st)
    d = border_distance(PLAN, st, cell, buffer)
    exact = PLAN.grid.exact(*PLAN.xy(st.lat, st.lon), cell)
    assert (d > buffer) == (exact > buffer) and (d < -buffer) == (exact < -buffer)
    assert exact == pytest.approx(1000.0 - x, abs=1e-6)


def test_reduced_limits_are_made_once_per_place_limits() -> None:
    mem = BorderMemory()
    place = {"speed_zone:1": 10}
    first = reduced_limits(PLAN, mem, place)
    assert first == {"speed_zone:1": 10, "border.reduce_vehicle_speed": PLAN.slow}
    assert reduced_limits(PLAN, mem, place) is first
    assert reduced_limits(PLAN, mem, {"speed_zone:1": 10}) is not first


def test_border_alert_raised_once_and_cleared_after_being_back_long_enough() -> None:
    book = AlertBook(clear_after_s=60, update_interval_s=30)
    out = at(1050, 0)
    d = draft(out)
    border_alert(d, book, PLAN, cell_of(out), True)
    (a,) = d.alerts
    assert a.action is AlertAction.RAISE and a.alert_type is AlertType.VEHICLE_OUT_OF_NETWORK_AREA
    assert a.inputs["border_distance_m"] == pytest.approx(-50.0, abs=1e-6)
    d = draft(out, NOW + 5)
    border_alert(d, book, PLAN, cell_of(out), True)
    assert d.alerts == ()  # open and steady
    back = at(0, 0)
    for t, cleared in ((NOW + 10, False), (NOW + 40, False), (NOW + 75, True)):
        d = draft(back, t)
        border_alert(d, book, PLAN, cell_of(back), False)
        assert [x.action for x in d.alerts] == ([AlertAction.CLEAR] if cleared else [])


def test_leaving_plays_the_sound_and_tells_only_a_rider() -> None:
    out = at(1050, 0)
    d = draft(out)
    border_notices(d, PLAN, cell_of(out))
    assert [c.kind for c in d.commands] == [CommandKind.PLAY_SOUND]
    assert [n.kind for n in d.notifications] == [NK.OUT_OF_NETWORK_AREA]
    assert d.notifications[0].to_rider
    parked = replace(out, trip=None)
    d = draft(parked)
    border_notices(d, PLAN, cell_of(parked))
    assert [c.kind for c in d.commands] == [CommandKind.PLAY_SOUND] and d.notifications == ()


# -- speed zones and limits -------------------------------------------------------------


def test_speed_zone_is_held_within_the_buffer_and_released_beyond() -> None:
    zone = (0,)  # speed zone 1 is the first zone of the bundle
    assert hold_speed_zones(PLAN, 305.0, 0.0, zone, (), 10.0) == zone  # 5 m out, buffer 10
    assert hold_speed_zones(PLAN, 315.0, 0.0, zone, (), 10.0) == ()  # 15 m out
    assert hold_speed_zones(PLAN, 305.0, 0.0, zone, zone, 10.0) == zone  # still inside
    parking = (1,)  # a virtual parking is not a speed zone: never held
    assert hold_speed_zones(PLAN, 505.0, 450.0, parking, (), 10.0) == ()


def test_zone_rules_are_reused_for_the_same_zones_and_redone_when_they_differ() -> None:
    mem = ZoneMemory()
    st = at(0, 0)
    hits = cell_of(st).covering
    rules = zone_rules_at(PLAN, mem, st, hits, 5.0, NOW)
    assert rules.limits == {"speed_zone:1": 10} and rules.ride_end_allowed is True
    assert zone_rules_at(PLAN, mem, st, hits, 5.0, NOW) is rules
    assert zone_rules_at(PLAN, mem, replace(st, vehicle_type_id="bike"), hits, 5.0, NOW) == rules
    scooter = at(-700, 0, vehicle_type_id="scooter")
    no_through = zone_rules_at(PLAN, mem, scooter, cell_of(scooter).covering, 5.0, NOW)
    assert no_through.ride_through_allowed is False and no_through.ride_end_allowed is False
    assert no_through.limits == {
        "gbfs.maximum_speed_kph": 8,
        "gbfs.ride_through_allowed": PLAN.slow,
    }
    parked = replace(scooter, trip=None)  # off a trip, riding through is not limited
    assert (
        "gbfs.ride_through_allowed"
        not in zone_rules_at(PLAN, mem, parked, cell_of(parked).covering, 5.0, NOW).limits
    )


def test_ride_through_notice_once_until_out_of_such_zones() -> None:
    mem = TripMemory("t1")
    assert ride_through_notice(mem, False, True) is True
    assert ride_through_notice(mem, False, True) is False
    assert ride_through_notice(mem, None, True) is False and mem.no_through_told
    assert ride_through_notice(mem, True, True) is False and not mem.no_through_told
    assert ride_through_notice(mem, False, False) is False  # no trip: nobody to tell


def test_vehicle_limits_speed_mode_battery_slow_down_and_reuse() -> None:
    mem = LimitsMemory()
    place = {"speed_zone:1": 10}
    vehicle_limits(PLAN, mem, place, 2, 80)
    assert mem.limits == {"speed_zone:1": 10, "speed_mode": 20} and mem.effective == 10
    limits = mem.limits
    vehicle_limits(PLAN, mem, place, 2, 80)
    assert mem.limits is limits  # nothing changed: reused
    vehicle_limits(PLAN, mem, {}, 9, 15)  # unknown model: the high speed; low battery
    assert mem.limits == {"speed_mode": 25, "battery_slow_down": 12} and mem.effective == 12
    vehicle_limits(PLAN, mem, {}, 9, 4)
    assert mem.battery_locks == BATTERY_LOCK


def test_speed_command_only_when_the_limit_changes() -> None:
    mem = LimitsMemory()
    d = draft(at(0, 0), limits={"speed_zone:1": 10, "speed_mode": 20}, max_speed=10)
    speed_command(d, mem)
    (c,) = d.commands
    assert c.kind is CommandKind.SET_MAX_SPEED and c.max_speed_kph == 10
    assert c.reason == "speed_zone:1" and c.inputs["limits"] == {
        "speed_zone:1": 10,
        "speed_mode": 20,
    }
    d = draft(at(0, 0), limits={"speed_zone:1": 10}, max_speed=10)
    speed_command(d, mem)
    assert d.commands == ()
    d = draft(at(0, 0), max_speed=None)
    speed_command(d, mem)
    assert d.commands[0].reason == "no_limit" and d.commands[0].max_speed_kph is None


# -- battery ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("battery", "limit", "locks"),
    [(80, None, ()), (16, None, ()), (15, 12, ()), (5, 12, ()), (4, 12, BATTERY_LOCK)],
)
def test_battery_slow_down_and_lock_thresholds(
    battery: int, limit: int | None, locks: tuple[str, ...]
) -> None:
    assert battery_limit(PLAN, battery) == limit
    assert battery_locks(PLAN, battery) == locks


# -- virtual parkings -----------------------------------------------------------------


def test_parking_verdict_room_full_nearby_and_required() -> None:
    full = ParkingCounts(lambda pid: 2)
    free = ParkingCounts(lambda pid: 1)
    inside = at(450, 450, speed_kph=0.0)
    info = PLAN.place(PLAN.grid.lookup(450, 450)[0])
    assert info.parkings == (0,)
    ok = parking_verdict(PLAN, free, info.parkings, inside, 5.0)
    assert ok.refusal is None and ok.parkings == (ParkingRoom(7, 2, 1, "provider"),)
    assert parking_verdict(PLAN, full, info.parkings, inside, 5.0).refusal == "parking-full"
    beside = at(505, 450, speed_kph=0.0)  # 5 m outside it: within a 10 m buffer
    assert parking_verdict(PLAN, free, (), beside, 10.0).refusal is None
    assert parking_verdict(PLAN, free, (), beside, 3.0).refusal is None  # none: not required
    required = load_bundle(_doc(parking_required=True)).plan
    assert required is not None
    far = parking_verdict(required, free, (), at(0, 0), 5.0)
    assert far.refusal == "outside-parking" and far.parkings == ()


def test_ride_end_refusal_is_told_once_and_the_verdict_is_remembered() -> None:
    counts = ParkingCounts(lambda pid: 2)
    mem = ParkingMemory()
    st = at(450, 450, speed_kph=0.0)
    rules = PLAN.zone_rules(PLAN.place(cell_of(st).covering), None, True, NOW)
    assert judge_ride_end(PLAN, counts, mem, st, rules, False, 5.0) is True
    assert mem.ride_end_allowed is False and mem.ride_end_reasons == ("parking-full",)
    assert mem.judged is None  # parkings were looked at: judged again next time
    assert judge_ride_end(PLAN, counts, mem, st, rules, False, 5.0) is False  # told already
    assert judge_ride_end(PLAN, counts, mem, st, rules, True, 5.0) is False  # moving
    assert mem.judged is rules and mem.ride_end_allowed is True and mem.parkings_seen == ()
    assert mem.told is not None  # kept while moving: no repeat after a stop at a light
    judge_ride_end(PLAN, counts, mem, replace(st, trip=None), rules, False, 5.0)
    assert mem.told is None
    d = draft(st)
    mem.told = None
    judge_ride_end(PLAN, counts, mem, st, rules, False, 5.0)
    parking_note(d, mem)
    (n,) = d.notifications
    assert n.kind is NK.PARKING_FULL and n.reason == "virtual_parkings.capacity"
    assert n.inputs["parkings"] == [{"id": 7, "capacity": 2, "occupancy": 2, "source": "provider"}]


def test_parking_counts_provider_failure_and_what_was_seen() -> None:
    def broken(pid: int) -> int:
        raise RuntimeError("down")

    counts = ParkingCounts(broken)
    a, b = ParkingMemory(), ParkingMemory()
    counts.move("a", a, (7,))
    counts.move("b", b, (7,))
    assert counts.occupancy(7) == (2, "provider-error")
    counts.move("a", a, ())
    assert counts.observed() == {7: frozenset({"b"})} and a.parked_in == ()
    assert ParkingCounts(None).occupancy(7) == (0, "observed")
    assert ParkingCounts(lambda pid: None).occupancy(7) == (0, "observed")
    assert ParkingCounts(lambda pid: 5).occupancy(7) == (5, "provider")


# -- trip timers and the credit rule --------------------------------------------------


def test_trip_timers_fire_at_their_times_once_or_at_their_frequency() -> None:
    rt = PLAN.timings
    assert rt is not None
    mem = TripMemory("t1")
    trip = Trip("t1", NOW - 7200, last_moved_at=NOW - 900)
    kinds = [e.kind for e in trip_timers(trip, NOW, 7200, rt, mem, moving=False)]
    assert kinds == [NK.TRIP_TOO_LONG, CommandKind.TRIP_HOLD]
    assert trip_timers(trip, NOW + 60, 7260, rt, mem, moving=False) == ()
    again = trip_timers(trip, NOW + 1800, 9000, rt, mem, moving=False)
    assert [e.kind for e in again] == [NK.TRIP_TOO_LONG]  # at its frequency; hold once
    stolen = trip_timers(trip, NOW + 86400, 86400 + 7200, rt, mem, moving=True)
    assert [e.kind for e in stolen] == [NK.TRIP_TOO_LONG, NK.VEHICLE_STOLEN]
    assert not stolen[1].to_rider and stolen[0].to_rider
    held = Trip("t1", NOW - 100, on_hold=True, hold_started_at=NOW - 3600)
    (end,) = trip_timers(held, NOW, 100, rt, TripMemory("t1"), moving=False)
    assert end.kind is CommandKind.END_TRIP and end.extra == {"paused_for_s": 3600.0}


def test_time_and_credit_locks_and_the_quiet_time() -> None:
    mem = TripMemory("t1")
    long_trip = Trip("t1", NOW - 28800, credit=1000.0)
    assert run_trip_rules(PLAN, mem, long_trip, NOW, True) != ()  # too long, too
    assert mem.locks == TIME_LOCK and not mem.cost_due
    mem = TripMemory("t1")
    broke = Trip("t1", NOW - 600, credit=2.0)  # 1 + 10 min * 0.25 = 3.5 >= 2
    assert run_trip_rules(PLAN, mem, broke, NOW, True) == ()
    assert mem.locks == CREDIT_LOCK and mem.cost_due
    mem = TripMemory("t1")
    fresh = Trip("t1", NOW - 60, credit=20.0, last_moved_at=NOW)
    run_trip_rules(PLAN, mem, fresh, NOW, True)
    assert mem.locks == () and mem.quiet_trip is fresh
    # The earliest change is the auto-pause (still for 900 s), a little early, never late.
    assert NOW + 900 - 2 < mem.quiet_until < NOW + 900
    run_trip_rules(PLAN, mem, fresh, NOW + 600, True)  # quiet: nothing run, nothing changed
    assert mem.quiet_from == NOW
    run_trip_rules(PLAN, mem, replace(fresh, credit=1.5), NOW + 600, True)  # another trip state
    assert mem.quiet_from == NOW + 600 and mem.locks == CREDIT_LOCK


def test_credit_rule_matches_the_trip_cost() -> None:
    price = PLAN.price(NOW)
    assert price is not None
    for age, hold, on_hold, credit in [
        (600, 0, False, 3.5),
        (600, 0, False, 3.6),
        (600, 120, True, 3.0),
        (60, 0, False, 0.5),
    ]:
        trip = Trip("t", NOW - age, credit, on_hold, NOW - hold if on_hold else None)
        cost = trip_cost_now(price, trip, NOW)
        assert credit_used_up(PLAN, TripMemory("t"), trip, NOW, age) == (cost >= credit)
    trip = Trip("t", NOW - 600, 5.0, hold_seconds=60)
    assert trip_cost_now(price, trip, NOW) == trip_cost(price, 540, 60)


def test_quiet_until_is_the_earliest_due_time_a_little_early() -> None:
    def early(q: float, due: float) -> bool:
        return due - 2 < q < due

    mem = TripMemory("t1")
    trip = Trip("t1", NOW, last_moved_at=NOW + 100)
    assert early(quiet_until(PLAN, trip, mem), NOW + 100 + 900)  # the auto-pause
    mem.hold_sent = True
    assert early(quiet_until(PLAN, trip, mem), NOW + 7200)  # the too-long notice
    mem.too_long_at = NOW + 7200
    assert early(quiet_until(PLAN, trip, mem), NOW + 7200 + 1800)  # and its repeat
    mem.locks = TIME_LOCK  # trip_auto_lock already in force: not due again
    mem.too_long_at, mem.stolen_told = NOW + 86400, True
    assert early(quiet_until(PLAN, trip, mem), NOW + 86400 + 1800)


def test_timer_decisions_in_the_order_they_fired() -> None:
    d = draft(at(0, 0))
    timer_decisions(
        d,
        (
            TimerEvent(NK.TRIP_TOO_LONG, "rent_timings.trip_too_long_notifications", True),
            TimerEvent(CommandKind.TRIP_HOLD, "rent_timings.trip_auto_pause", extra={"s": 1.0}),
        ),
    )
    assert [n.kind for n in d.notifications] == [NK.TRIP_TOO_LONG]
    assert [c.kind for c in d.commands] == [CommandKind.TRIP_HOLD]
    assert d.commands[0].inputs["s"] == 1.0 and d.commands[0].inputs["trip_id"] == "t1"


# -- locking ----------------------------------------------------------------------------


def test_lock_only_at_rest_resent_after_the_interval_and_the_trip_ended_once() -> None:
    mem, tm = LockMemory(), TripMemory("t1")
    locks = ("border.lock_vehicle", *BATTERY_LOCK)
    ends = BATTERY_LOCK
    d = draft(at(0, 0))
    lock_decisions(d, PLAN, mem, tm, locks, ends, moving=True)
    assert d.commands == ()  # moving: slowed first (pending lock), not locked
    rest = at(0, 0, speed_kph=0.0)
    d = draft(rest)
    lock_decisions(d, PLAN, mem, tm, locks, ends, moving=False)
    assert [c.kind for c in d.commands] == [CommandKind.LOCK, CommandKind.END_TRIP]
    assert d.commands[0].reason == "border.lock_vehicle"
    assert d.commands[1].reason == BATTERY_LOCK[0]
    assert d.commands[0].inputs["lock_reasons"] == list(locks)
    d = draft(rest, NOW + LOCK_RESEND_S - 1)
    lock_decisions(d, PLAN, mem, tm, locks, ends, moving=False)
    assert d.commands == ()
    d = draft(rest, NOW + LOCK_RESEND_S)
    lock_decisions(d, PLAN, mem, tm, locks, ends, moving=False)
    assert [c.kind for c in d.commands] == [CommandKind.LOCK]  # the trip ends once
    lock_decisions(draft(rest), PLAN, mem, tm, (), (), moving=False)
    assert mem.sent_at is None


def test_unlock_once_per_trip_and_not_on_hold() -> None:
    mem, tm = LockMemory(), TripMemory("t1")
    locked = at(0, 0, locked=True, speed_kph=0.0, model_id=2)
    d = draft(locked)
    lock_decisions(d, PLAN, mem, tm, (), (), moving=False)
    (c,) = d.commands
    assert c.kind is CommandKind.UNLOCK and c.auto_light is True and c.reason == "trip.active"
    d = draft(locked)
    lock_decisions(d, PLAN, mem, tm, (), (), moving=False)
    assert d.commands == ()
    on_hold = replace(locked, trip=Trip("t2", NOW, on_hold=True, hold_started_at=NOW))
    d = draft(on_hold)
    lock_decisions(d, PLAN, mem, TripMemory("t2"), (), (), moving=False)
    assert d.commands == ()


def test_pending_lock_slows_first_and_is_made_once_per_limits() -> None:
    lm = LimitsMemory(limits={"speed_zone:1": 10}, effective=10)
    mem = pending_lock(PLAN, LockMemory(), lm)
    assert mem.pending_limits == {"speed_zone:1": 10, "pending_lock": PLAN.slow}
    assert mem.pending_max_speed == min(10, PLAN.slow)
    made = mem.pending_limits
    assert pending_lock(PLAN, mem, lm).pending_limits is made
    fast = LimitsMemory(limits={}, effective=None)
    assert pending_lock(PLAN, mem, fast).pending_max_speed == PLAN.slow


@pytest.mark.parametrize("locked", [False, True])
@pytest.mark.parametrize("moving", [False, True])
@pytest.mark.parametrize("on_trip", [False, True])
@pytest.mark.parametrize("locks", [(), ("border.lock_vehicle",)])
@pytest.mark.parametrize("sent_at", [None, NOW - 5, NOW - 60])
@pytest.mark.parametrize("unlock_sent", [False, True])
def test_lock_settled_means_lock_decisions_does_nothing(
    locked: bool,
    moving: bool,
    on_trip: bool,
    locks: tuple[str, ...],
    sent_at: float | None,
    unlock_sent: bool,
) -> None:
    st = at(0, 0, locked=locked, trip=Trip("t1", NOW - 60) if on_trip else None)
    mem, tm = LockMemory(sent_at=sent_at), TripMemory("t1", unlock_sent=unlock_sent)
    settled = lock_settled(mem, tm, st, locks, moving, NOW)
    d = draft(st)
    lock_decisions(d, PLAN, mem, tm, locks, locks, moving)
    changed = d.commands != () or mem.sent_at != sent_at or tm.unlock_sent != unlock_sent
    assert settled is not changed


# -- fleet alerts -----------------------------------------------------------------------


def test_moving_and_unlocked_without_trip_raise_and_clear() -> None:
    book = AlertBook(clear_after_s=30)
    thief = at(0, 0, locked=True, trip=None)
    d = draft(thief)
    moving_alert(d, book, moving=True)
    unlocked_alert(d, book)
    assert [(a.alert_type, a.action) for a in d.alerts] == [
        (AlertType.VEHICLE_ILLEGAL_MOVING, AlertAction.RAISE)
    ]
    loose = at(0, 0, locked=False, trip=None, speed_kph=0.0)
    d = draft(loose, NOW + 40)
    moving_alert(d, book, moving=False)
    unlocked_alert(d, book)
    assert [(a.alert_type, a.action) for a in d.alerts] == [
        (AlertType.UNEXPECTED_UNLOCK, AlertAction.RAISE)
    ]
    d = draft(loose, NOW + 80)
    moving_alert(d, book, moving=False)
    assert [(a.alert_type, a.action) for a in d.alerts] == [
        (AlertType.VEHICLE_ILLEGAL_MOVING, AlertAction.CLEAR)
    ]


@pytest.mark.parametrize("opened", [(), ("out",), ("moving",), ("out", "unlocked")])
@pytest.mark.parametrize("outside", [None, False, True])
@pytest.mark.parametrize("locked", [False, True])
@pytest.mark.parametrize("moving", [False, True])
@pytest.mark.parametrize("on_trip", [False, True])
def test_alerts_settled_means_the_alert_evaluators_change_nothing(
    opened: tuple[str, ...], outside: bool | None, locked: bool, moving: bool, on_trip: bool
) -> None:
    types = {
        "out": AlertType.VEHICLE_OUT_OF_NETWORK_AREA,
        "moving": AlertType.VEHICLE_ILLEGAL_MOVING,
        "unlocked": AlertType.UNEXPECTED_UNLOCK,
    }
    book = AlertBook(clear_after_s=0)
    for name in opened:
        book.present("v1", types[name], AlertSeverity.HIGH, NOW - 10, "setup", {})
    st = at(1050 if outside else 0, 0, locked=locked, trip=Trip("t1", NOW) if on_trip else None)
    no_trip = st.trip is None
    settled = alerts_settled(
        book.open_for("v1"), outside, moving and (locked or no_trip), not locked and no_trip
    )
    d = draft(st)
    if outside is not None:
        border_alert(d, book, PLAN, cell_of(st), outside)
    moving_alert(d, book, moving)
    unlocked_alert(d, book)
    after = dict(book.open_for("v1") or {})
    assert settled is (d.alerts == () and sorted(after) == sorted(types[n] for n in opened))


# -- the draft and the inputs -------------------------------------------------------------


def test_inputs_are_built_once_and_carry_the_cost_when_the_credit_rule_fired() -> None:
    price = PLAN.price(NOW)
    assert price is not None
    st = at(0, 0, trip=Trip("t1", NOW - 600, credit=2.0))
    d = draft(st, due_price=price)
    assert d.inputs() is d.inputs()
    inputs = d.inputs()
    assert inputs["trip_cost"] == pytest.approx(3.5) and inputs["credit"] == 2.0
    assert inputs["trip_duration_s"] == 600.0 and inputs["bundle"] == PLAN.version
    plain = decision_inputs(PLAN.version, st, NOW, None)
    assert "trip_cost" not in plain and plain["trip_id"] == "t1"
    assert "trip_duration_s" not in decision_inputs(PLAN.version, replace(st, trip=None), NOW, None)
