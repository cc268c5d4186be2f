"""The tap-to-ride flow end to end, in process: the real SUN verifier, store, outbox and rules
engine; the devices' messages built as the MQTT driver hands them over; a fake command port
(``tests/plugins/flow.py``) that records every command and acks it.

Tap -> unlock-spot ack -> undock -> trip started -> ride through a speed zone (max-speed
command) -> dock at another station -> trip ended with its cost, every event in order.
"""

from __future__ import annotations

from typing import Any

import pytest

from dockgate.gateway.protocol import AlarmEvent, PowerEvent, VehicleEvent, now_ms
from dockgate.gateway.rules.pricing import pricing_at, trip_cost
from tests.plugins.flow import SITE_A, SITE_B, FlowRig, station, telemetry, until, vehicle

pytestmark = [pytest.mark.timeout(60), pytest.mark.engines("sqlite", "postgresql")]


def between(a: tuple[float, float], b: tuple[float, float], f: float) -> tuple[float, float]:
    return (a[0] + (b[0] - a[0]) * f, a[1] + (b[1] - a[1]) * f)


async def test_tap_ride_dock_elsewhere_ends_trip_with_cost(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    card = rig.rider(7)

    decision = await flow.on_tap(rig.tap(card))
    # the highest battery wins; the spot acked and physically opened
    assert decision.accepted and decision.status == "unlocked", decision
    assert (decision.spot, decision.vehicle_id, decision.rider_id) == (1, 1, 7)
    [unlock] = rig.port.commands("unlock-spot", "ST01")
    assert unlock.spot == 1  # type: ignore[union-attr]

    await rig.undock("ST01", 1, "SXB001")  # the rider takes the vehicle
    trip_id = rig.store.vehicles.get(1).trip_id
    assert trip_id is not None
    trip = rig.store.trips.get(trip_id)
    assert trip.status == "running" and trip.start_spot_id == 11
    await until(lambda: rig.port.commands("unlock-vehicle", "SXB001"), what="vehicle unlocked")

    for step in range(6):  # ride from A into the zone around B
        at = between(SITE_A, SITE_B, step / 5)
        await flow.on_device_message(telemetry("SXB001", at, speed=12.0, lock="unlocked"))
    await until(
        lambda: [c for c in rig.port.commands("set-max-speed", "SXB001") if c.max_speed == 15],  # type: ignore[union-attr]
        what="zone speed cap",
    )
    await rig.dock("ST02", 2, "SXB001")
    ended = rig.store.trips.get(trip_id)
    assert ended.status == "finished"
    await until(lambda: rig.port.commands("lock-vehicle", "SXB001"), what="vehicle locked")
    await flow.drain()

    b = rig.engine.bundle
    price = pricing_at(b.config.pricing, ended.started_at, b.timezone)
    assert price is not None and ended.ended_at is not None and ended.cost is not None
    expected = round(trip_cost(price, ended.ended_at - ended.started_at, 0.0) * 100)
    assert abs(ended.cost - expected) <= 1 and ended.cost >= 100  # unlock price 1.00
    assert (ended.end_station_id, ended.end_spot_id) == (2, 22)
    assert rig.store.riders.get(7).credit == 2000 - ended.cost
    assert rig.store.vehicles.get(1).spot_id == 22 and rig.store.vehicles.get(1).trip_id is None

    # the outbox tells the whole story, in order
    events = rig.outbox.read(0, 10_000)

    def first(kind: str, **match: Any) -> int:
        for e in events:
            if e.kind == kind and all(e.payload.get(k) == v for k, v in match.items()):
                return e.cursor
        raise AssertionError(f"no {kind} {match} in {[x.kind for x in events]}")

    order = [
        first("tap.accepted", rider_id=7),
        first("command.outcome", command="unlock-spot", state="acked", status="done"),
        first("trip.started", trip_id=trip_id),
        first("command.outcome", command="unlock-vehicle", state="acked"),
        first("trip.ended", trip_id=trip_id, cost=ended.cost),
        first("command.outcome", command="lock-vehicle", state="acked"),
    ]
    assert order == sorted(order), order
    speeds = [c for c in rig.commands("set-max-speed") if c.trip_id == trip_id]
    assert any('"max_speed": 15' in c.args and c.state == "acked" for c in speeds)
    assert len(rig.commands("unlock-spot")) == 1
    assert len(rig.commands("unlock-vehicle")) == 1  # the engine's unlock joined the trip's
    assert len(rig.port.commands("unlock-spot")) == 1
    assert len(rig.port.commands("unlock-vehicle")) == 1


async def test_undock_timeout_relocks_spot_and_cancels(rig: FlowRig) -> None:
    flow = await rig.start_gateway(undock_timeout=0.5)
    decision = await flow.on_tap(rig.tap(rig.rider(8)))
    assert decision.status == "unlocked"
    # the rider walks away: no undock
    await until(lambda: rig.events("rental.cancelled"), what="rental cancelled")
    await flow.drain()
    [relock] = rig.port.commands("lock-spot", "ST01")
    assert relock.spot == 1  # type: ignore[union-attr]
    assert rig.store.vehicles.get(1).trip_id is None
    assert rig.events("rental.cancelled")[0]["reason"] == "not_undocked"
    assert not flow.rentals


async def test_station_power_and_alarm_and_vehicle_events(rig: FlowRig) -> None:
    await rig.start_gateway()
    st01 = station("ST01")
    cut = PowerEvent(ts=now_ms(), device_id="ST01", type="station-power-cut", battery=80)
    await rig.send(st01, cut)
    assert rig.events("alert.raised")
    assert rig.store.outages.of_cluster(1)[-1].ended_at is None
    restored = PowerEvent(ts=now_ms(), device_id="ST01", type="station-power-restored")
    await rig.send(st01, restored)
    assert rig.events("alert.cleared")
    assert rig.store.outages.of_cluster(1)[-1].ended_at is not None
    alarm = AlarmEvent(
        ts=now_ms(), device_id="ST01", type="station-alarm-triggered", reason="tamper"
    )
    await rig.send(st01, alarm)
    fallen = VehicleEvent(ts=now_ms(), device_id="SXB002", type="vehicle-fallen")
    await rig.send(vehicle("SXB002"), fallen)
    crit = [e for e in rig.outbox.read(0, 10_000) if e.kind == "alert.raised"]
    assert {e.payload["alert_type"] for e in crit} == {
        "station-power-cut",
        "station-alarm-triggered",
        "vehicle-fallen",
    }
    assert all(e.priority.name == "CRITICAL" for e in crit)
    assert rig.events("station.power-restored")[0]["battery"] is None
