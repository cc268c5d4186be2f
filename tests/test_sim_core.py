"""The simulators' pure cores: scooter and station state machines, routes, faults, clocks."""

from __future__ import annotations

import asyncio
import random

import pytest

from dockgate.gateway.protocol import (
    MAX_PAYLOAD,
    Channel,
    LockState,
    OutcomeStatus,
    ProtocolError,
    SpeedMode,
    SpotState,
    VehicleEventType,
    decode,
    encode,
)
from dockgate.sim.device_base import Broker, CommandMemory
from dockgate.sim.faults import FaultPlan, FaultSpecError, malformed_payload, oversized_payload
from dockgate.sim.routes import (
    CENTRE,
    Route,
    default_routes,
    distance_m,
    offset,
    random_route,
    station_sites,
)
from dockgate.sim.scooter import MODE_SPEED_KMH, ScooterConfig, ScooterCore
from dockgate.sim.simclock import ManualClock, ScaledClock
from dockgate.sim.station import StationCore, StationError

T0 = 1_700_000_000.0


def straight(metres: float = 5000.0) -> Route:
    return Route("straight", [CENTRE, offset(*CENTRE, metres, 0)])


# --- routes --------------------------------------------------------------------------------


def test_route_length_and_fix_follow_the_geometry() -> None:
    r = straight(1000)
    assert r.length_m == pytest.approx(1000, rel=1e-6)
    fix = r.fix_at(500)
    assert r.distance_to(fix.lat, fix.lon) < 0.01
    assert fix.heading == pytest.approx(90, abs=0.5)  # due east
    end = r.fix_at(5000)  # clamped on a non-looped route
    assert (end.lat, end.lon) == pytest.approx(offset(*CENTRE, 1000, 0))
    assert r.finished(1000) and not r.finished(999)


def test_looped_route_wraps() -> None:
    ring = default_routes()[0]
    assert ring.loop
    a, b = ring.fix_at(10), ring.fix_at(10 + ring.length_m)
    assert (a.lat, a.lon) == pytest.approx((b.lat, b.lon))
    assert not ring.finished(10 * ring.length_m)


def test_routes_refuse_degenerate_input() -> None:
    with pytest.raises(ValueError):
        Route("one", [CENTRE])
    with pytest.raises(ValueError):
        Route("zero", [CENTRE, CENTRE])


def test_random_route_stays_near_centre_and_sites_are_distinct() -> None:
    rng = random.Random(3)
    for _ in range(20):
        r = random_route(rng, radius_m=1000)
        for point in r.points:
            assert distance_m(CENTRE, point) < 1700
    sites = station_sites(20)
    assert len(set(sites)) == 20


def test_default_routes_include_one_that_leaves_town() -> None:
    ends = [r.fix_at(r.length_m) for r in default_routes()]
    far = [f for f in ends if distance_m(CENTRE, (f.lat, f.lon)) > 5000]
    assert far, "the excursion route must leave the demo city"


# --- scooter -------------------------------------------------------------------------------


def test_scooter_locked_does_not_move_and_unlocked_rides_at_mode_speed() -> None:
    core = ScooterCore("SXB001", T0)
    core.ride(straight(), T0)
    core.advance(T0 + 60)
    assert core.odometer_m == 0 and core.speed == 0
    core.do_unlock(T0 + 60, light=True)
    assert core.light
    core.advance(T0 + 120)
    assert core.speed == MODE_SPEED_KMH[SpeedMode.NORMAL]
    assert core.odometer_m == pytest.approx(20 / 3.6 * 60, rel=1e-6)
    assert core.telemetry_interval == 10.0


def test_scooter_max_speed_and_speed_mode_cap_the_speed() -> None:
    core = ScooterCore("SXB001", T0, config=ScooterConfig(cruise_kmh=30))
    core.do_unlock(T0, light=False)
    core.ride(straight(), T0)
    core.set_speed_mode(T0, SpeedMode.SPORT)
    assert core.speed == 25
    core.set_max_speed(T0, 6)
    assert core.speed == 6 and core.max_speed == 6
    core.advance(T0 + 100)
    assert core.odometer_m == pytest.approx(6 / 3.6 * 100, rel=1e-6)
    tel = core.telemetry(T0 + 100)
    assert tel.max_speed == 6 and tel.speed_mode is SpeedMode.SPORT and tel.speed == 6


def test_scooter_drains_battery_slows_down_and_warns_once() -> None:
    cfg = ScooterConfig(drain_pct_per_km=10, low_battery_pct=15, min_battery_to_slow_down=20)
    core = ScooterCore("SXB001", T0, battery=30, config=cfg)
    core.do_unlock(T0, light=False)
    core.ride(straight(50_000), T0)
    core.advance(T0 + 3600)  # far more than the battery allows
    assert core.battery == pytest.approx(0, abs=0.1)
    assert core.odometer_m == pytest.approx(3000, rel=0.01)  # 30 % at 10 %/km
    assert core.take_events() == [VehicleEventType.LOW_BATTERY]
    assert core.speed == 0 and not core.riding
    core.battery = 18
    assert core.max_speed == cfg.battery_slow_down_speed


def test_scooter_lock_with_trip_hold_keeps_the_route() -> None:
    core = ScooterCore("SXB001", T0)
    core.do_unlock(T0, light=False)
    core.ride(straight(), T0)
    core.advance(T0 + 10)
    core.do_lock(T0 + 10, trip_on_hold=True)
    assert core.lock is LockState.ON_HOLD and core.route is not None and core.speed == 0
    core.do_unlock(T0 + 20, light=False)
    assert core.riding
    core.do_lock(T0 + 30, trip_on_hold=False)
    assert core.lock is LockState.LOCKED and core.route is None


def test_scooter_events_fallen_lifted_and_moving_while_locked() -> None:
    core = ScooterCore("SXB001", T0)
    core.push(T0, 3, 0)
    assert core.take_events() == []  # a nudge is not theft
    core.push(T0, 12, 0)
    core.lift(T0)
    core.do_unlock(T0, light=False)
    core.push(T0, 50, 0)  # unlocked: moving is fine
    core.ride(straight(), T0)
    core.fall(T0 + 1)
    assert core.take_events() == [
        VehicleEventType.ILLEGAL_MOVING,
        VehicleEventType.LIFTED,
        VehicleEventType.FALLEN,
    ]
    assert not core.riding
    core.stand_up(T0 + 2)
    assert core.riding


def test_scooter_telemetry_decodes_through_the_gateway_gate() -> None:
    core = ScooterCore("SXB001", T0)
    payload = encode(core.telemetry(T0))
    msg = decode("dockgate/1/vehicle/SXB001/telemetry", payload, received_at=T0)
    assert msg.payload.lock is LockState.LOCKED
    ev = encode(core.event(VehicleEventType.FALLEN, T0))
    assert decode("dockgate/1/vehicle/SXB001/event", ev, received_at=T0).payload.type == (
        VehicleEventType.FALLEN
    )


# --- station -------------------------------------------------------------------------------


def test_station_dock_identify_and_undock() -> None:
    st = StationCore("ST01", T0, spot_count=4)
    st.dock(1, "SXB001", T0)
    st.dock(2, "SXB002", T0, identify=False)
    with pytest.raises(StationError):
        st.dock(1, "SXB003", T0)
    with pytest.raises(StationError):
        st.dock(9, "SXB003", T0)
    kinds = [m.type for _, m in st.events]
    assert kinds == ["spot-docked", "spot-identify-fail"]
    status = st.status(T0)
    assert [s.state for s in status.spots] == [
        SpotState.OCCUPIED,
        SpotState.OCCUPIED,
        SpotState.FREE,
        SpotState.FREE,
    ]
    assert status.spots[0].vehicle_id == "SXB001" and status.spots[0].locked
    st.events.clear()
    assert st.actuate(1, True, "ok", T0) == (OutcomeStatus.DONE, None)
    assert st.undock(1, T0) == "SXB001"
    assert [m.type for _, m in st.events] == ["spot-undocked"]


def test_station_undock_while_locked_is_an_unexpected_unlock() -> None:
    st = StationCore("ST01", T0, spot_count=2)
    st.dock(1, "SXB001", T0)
    st.events.clear()
    st.undock(1, T0)
    assert [m.type for _, m in st.events] == ["unexpected-unlock", "spot-undocked"]


def test_station_jam_and_no_answer_put_the_spot_out_of_service() -> None:
    st = StationCore("ST01", T0, spot_count=2)
    st.dock(1, "SXB001", T0)
    st.events.clear()
    assert st.actuate(1, True, "jam", T0) == (OutcomeStatus.FAILED, "lock-jammed")
    assert st.spot(1).locked and st.spot(1).state is SpotState.FAULT
    assert st.check_command(1) == "spot-out-of-service"
    assert st.check_command(7) == "no-such-spot"
    st.repair(1)
    assert st.check_command(1) is None
    assert st.actuate(2, True, "no-answer", T0) == (OutcomeStatus.FAILED, "lock-no-answer")
    assert [m.fault.value for _, m in st.events] == ["lock-jammed", "lock-no-answer"]


def test_station_power_cut_drains_backup_and_alarm_events() -> None:
    st = StationCore("ST01", T0, spot_count=2)
    st.cut_power(T0)
    st.cut_power(T0)  # already cut: no second event
    st.advance(T0 + 3600 * 10)
    assert st.battery == 0 and st.check_command(1) == "no-power"
    assert st.status(T0).battery == 0 and not st.status(T0).mains
    st.restore_power(T0)
    st.trigger_alarm("tamper", T0)
    st.clear_alarm(T0)
    types = [m.type for _, m in st.events]
    assert types == [
        "station-power-cut",
        "station-power-restored",
        "station-alarm-triggered",
        "station-alarm-cleared",
    ]
    for channel, model in st.events:
        decode(f"dockgate/1/station/ST01/{channel.value}", encode(model), received_at=T0)


def test_station_temperature_high_flag() -> None:
    st = StationCore("ST01", T0, spot_count=3)
    st.set_temperature(2, 75, T0)
    st.drift_temperatures(T0)
    temps = [m for _, m in st.events]
    assert temps[0].high and temps[0].celsius == 75
    assert len(temps) == 4 and not any(t.high for t in temps[1:])
    assert all(ch is Channel.SPOT for ch, _ in st.events)


# --- command memory, faults, clocks --------------------------------------------------------


def test_command_memory_dedupes_and_is_bounded() -> None:
    mem = CommandMemory(size=3)
    assert mem.begin("a") and not mem.begin("a")
    mem.add_reply("a", b"ack")
    assert mem.replies("a") == [b"ack"]
    for cid in "bcd":
        assert mem.begin(cid)
    assert "a" not in mem and len(mem) == 3


def test_fault_plan_parses_and_refuses_nonsense() -> None:
    plan = FaultPlan.parse("lost-ack=0.5,jam,disconnect=2")
    assert plan.lost_ack == 0.5 and plan.jam > 0 and plan.disconnect == 2
    assert set(FaultPlan.parse("all").active) == {
        "lost-ack", "slow-ack", "jam", "no-answer", "disconnect", "malformed", "oversized",
        "spoofed",
    }  # fmt: skip
    assert FaultPlan.parse("none").active == []
    for bad in ("bogus=1", "jam=2", "lost-ack=x", "disconnect=-1", "jam=nan"):
        with pytest.raises(FaultSpecError):
            FaultPlan.parse(bad)


def test_fault_dice_are_reproducible_and_roughly_at_rate() -> None:
    plan = FaultPlan(lost_ack=0.2, seed=7)
    a = [plan.for_device("SXB001").lose_ack() for _ in range(1)]
    b = [plan.for_device("SXB001").lose_ack() for _ in range(1)]
    assert a == b
    dice = plan.for_device("SXB001")
    hits = sum(dice.lose_ack() for _ in range(5000))
    assert 800 < hits < 1200
    assert FaultPlan().for_device("X").next_chaos() is None


def test_bad_payloads_are_refused_by_the_gateway_gate() -> None:
    good = encode(ScooterCore("SXB001", T0).telemetry(T0))
    rng = random.Random(1)
    codes = set()
    for _ in range(60):
        with pytest.raises(ProtocolError) as err:
            decode("dockgate/1/vehicle/SXB001/telemetry", malformed_payload(rng, good),
                   received_at=T0)  # fmt: skip
        codes.add(err.value.code)
    assert codes <= {"bad-json", "schema", "future-timestamp"} and "schema" in codes
    big = oversized_payload(good, MAX_PAYLOAD + 10)
    assert len(big) > MAX_PAYLOAD
    with pytest.raises(ProtocolError, match="oversized"):
        decode("dockgate/1/vehicle/SXB001/telemetry", big, received_at=T0)


def test_broker_parse() -> None:
    assert Broker.parse("mqtt://127.0.0.1:1884").port == 1884
    for bad in ("localhost", ":1883", "h:0", "h:99999", "h:x"):
        with pytest.raises(ValueError):
            Broker.parse(bad)


async def test_manual_clock_wakes_sleepers_only_when_advanced() -> None:
    clock = ManualClock(T0)
    task = asyncio.create_task(clock.sleep(10))
    await asyncio.sleep(0)
    clock.advance(5)
    await asyncio.sleep(0)
    assert not task.done()
    clock.advance(5)
    await asyncio.wait_for(task, 1)


async def test_scaled_clock_runs_faster() -> None:
    clock = ScaledClock(scale=100)
    t0 = clock.now()
    await clock.sleep(5)  # 50 ms of wall time
    assert clock.now() - t0 >= 5
    with pytest.raises(ValueError):
        ScaledClock(scale=0)


def test_default_routes_cross_the_demo_bundles_zones_and_one_leaves_the_border() -> None:
    """The demo shows the rules: routes cross every speed zone and one leaves the border."""
    import json
    from pathlib import Path

    from shapely.geometry import LineString, Polygon

    bundle = json.loads((Path(__file__).parents[1] / "config/rules/demo-milano.json").read_text())

    def poly(shape: list[list[float]]) -> Polygon:
        return Polygon([(lat, lon) for lon, lat in shape])

    lines = {r.name: LineString([*r.points, r.points[0]] if r.loop else r.points)
             for r in default_routes()}  # fmt: skip
    for zone in bundle["speed_zones"]:
        assert any(line.intersects(poly(zone["shape"])) for line in lines.values()), zone["name"]
    border = poly(bundle["border"]["shape"])
    leaving = [n for n, line in lines.items() if not border.contains(line)]
    assert leaving == ["excursion-east"]
