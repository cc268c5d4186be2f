"""Redelivery recognised, one transaction per message, in process.

After a crash between a batch's commit and its PUBACKs the broker delivers the batch again.
A message whose effect is not idempotent (a power cut, an alarm, a vehicle event, a spot
event) records its identity (blake2b of topic and payload) in the same transaction as its
effect: a second arrival, before or after a restart, is skipped and counted ``duplicate``.
A message whose handling raises is rolled back alone (its identity with it), counted
``failed``, and the batch goes on; what it started never reaches the wire.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from dockgate.gateway.protocol import (
    AlarmEvent,
    Channel,
    PowerEvent,
    SpotStatus,
    StationStatus,
    VehicleEvent,
    decode,
    encode,
    now_ms,
)
from dockgate.gateway.store import Inbox, Store
from tests.plugins.flow import SITE_A, SITE_B, FlowRig, message, station, telemetry, vehicle
from tests.support.stores import open_test_database

pytestmark = [pytest.mark.timeout(60), pytest.mark.engines("sqlite", "postgresql")]


def power(kind: str, ts: int) -> Any:
    return message(station("ST01"), PowerEvent(ts=ts, device_id="ST01", type=kind, battery=70))


def alarm(kind: str, ts: int) -> Any:
    return message(station("ST01"), AlarmEvent(ts=ts, device_id="ST01", type=kind))


def fallen(serial: str, ts: int) -> Any:
    return message(vehicle(serial), VehicleEvent(ts=ts, device_id=serial, type="vehicle-fallen"))


def count(rig: FlowRig, sql: str) -> int:
    return int(rig.db.conn.execute(sql).fetchone()[0])


def open_alerts(rig: FlowRig, alert_type: str) -> int:
    return count(
        rig,
        f"SELECT count(*) FROM fleet_alerts WHERE alert_type='{alert_type}'"
        " AND resolved_at IS NULL",
    )


def test_a_message_has_the_identity_of_its_topic_and_bytes() -> None:
    topic = station("ST01").topic(Channel.POWER)
    body = encode(PowerEvent(ts=now_ms(), device_id="ST01", type="station-power-cut"))
    first = decode(topic, body)
    again = decode(topic, body, received_at=time.time() + 30)  # the broker's redelivery
    assert len(first.identity) == 16 and first.identity == again.identity
    assert decode(topic, body + b" ").identity != first.identity
    other = station("ST02").topic(Channel.POWER)
    assert decode(other, body.replace(b"ST01", b"ST02")).identity != first.identity


async def test_a_redelivered_power_cut_does_not_cut_the_station_again(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    t = now_ms()
    cut, restored = power("station-power-cut", t), power("station-power-restored", t + 1)
    await flow.on_device_messages([cut, restored])
    assert count(rig, "SELECT count(*) FROM station_outages") == 1
    assert open_alerts(rig, "station-power-cut") == 0
    # the crash came before the PUBACKs: the broker delivers both again
    await flow.on_device_messages([cut, restored])
    assert flow.inbound["duplicate"] == 2
    assert count(rig, "SELECT count(*) FROM station_outages") == 1
    assert count(rig, "SELECT count(*) FROM station_outages WHERE ended_at IS NULL") == 0
    assert open_alerts(rig, "station-power-cut") == 0
    assert rig.kinds().count("alert.raised") == 1


async def test_the_identity_survives_a_restart(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    t = now_ms()
    batch = [alarm("station-alarm-triggered", t), alarm("station-alarm-cleared", t + 1)]
    await flow.on_device_messages(batch)
    assert rig.kinds().count("alert.raised") == 1 and rig.kinds().count("alert.cleared") == 1
    flow = await rig.start_gateway()  # the process died before the PUBACKs: a new flow
    await flow.on_device_messages(batch)
    assert flow.inbound["duplicate"] == 2
    assert open_alerts(rig, "station-alarm-triggered") == 0
    assert rig.kinds().count("alert.raised") == 1


async def test_a_vehicle_event_counts_once_even_twice_in_one_batch(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    event = fallen("SXB001", now_ms())
    await flow.on_device_messages([event, event])
    assert flow.inbound["duplicate"] == 1 and open_alerts(rig, "vehicle-fallen") == 1
    # an operator resolves it; the broker then redelivers the event: no new alert
    open_ids = [
        r[0] for r in rig.db.conn.execute("SELECT id FROM fleet_alerts WHERE resolved_at IS NULL")
    ]
    rig.store.alerts.resolve(open_ids, resolved_by="operator")
    await flow.on_device_message(event)
    assert flow.inbound["duplicate"] == 2 and open_alerts(rig, "vehicle-fallen") == 0
    # a new fall (a new message) is a new alert
    await flow.on_device_message(fallen("SXB001", now_ms() + 1))
    assert open_alerts(rig, "vehicle-fallen") == 1


async def test_a_failing_message_is_rolled_back_alone_and_the_batch_goes_on(
    rig: FlowRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = await rig.start_gateway()
    desk = flow._devices.stations.alerts

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk on fire")

    t = now_ms()
    cut = power("station-power-cut", t)
    monkeypatch.setattr(desk, "raise_alert", boom)
    await flow.on_device_messages(
        [telemetry("SXB001", SITE_A, battery=55), cut, telemetry("SXB002", SITE_A, battery=44)]
    )
    # the cut's outage (written before the alert failed) is undone with it; the rest stays
    assert flow.inbound["failed"] == 1
    assert count(rig, "SELECT count(*) FROM station_outages") == 0
    assert rig.store.vehicles.get(1).battery == 55 and rig.store.vehicles.get(2).battery == 44
    assert not rig.store.inbox.seen(cut.identity)  # not recorded: its redelivery applies
    monkeypatch.undo()
    await flow.on_device_message(cut)
    assert flow.inbound["duplicate"] == 0
    assert count(rig, "SELECT count(*) FROM station_outages") == 1
    assert open_alerts(rig, "station-power-cut") == 1


async def test_what_a_failed_message_started_never_reaches_the_wire(
    rig: FlowRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A status that starts a trip (its vehicle gone) and then fails: the trip is rolled
    back, and the vehicle's unlock, already handed to the background, is never sent, even
    though the next message of the batch journals a command under the same journal id."""
    flow = await rig.start_gateway()
    assert (await flow.on_tap(rig.tap(rig.rider(9)))).status == "unlocked"
    stations = flow._devices.stations

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("bug in a later spot")

    monkeypatch.setattr(stations, "_unearth_if_gone", boom)
    status = StationStatus(
        ts=now_ms(),
        device_id="ST01",
        spots=[  # spot 1 first: its vehicle is gone, the trip starts; then spot 3 fails
            SpotStatus(spot=1, state="free", locked=False),
            SpotStatus(spot=3, state="free", locked=False),
        ],
    )
    zone = telemetry("SXB003", SITE_B, max_speed=25)  # in a 15 km/h zone: set-max-speed
    await flow.on_device_messages([message(station("ST01"), status), zone])
    await flow.drain()
    assert flow.inbound["failed"] == 1
    assert not rig.store.trips.open(9) and "trip.started" not in rig.kinds()
    assert [c.max_speed for c in rig.port.commands("set-max-speed", "SXB003")] == [15]  # type: ignore[union-attr]
    assert not rig.port.commands("unlock-vehicle")


async def test_an_unknown_vehicle_joins_in_its_message_transaction(
    rig: FlowRig, monkeypatch: pytest.MonkeyPatch
) -> None:
    flow = await rig.start_gateway(enroll_vehicles=True)
    desk = flow._devices.alerts

    def boom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("no alert today")

    monkeypatch.setattr(desk, "raise_alert", boom)
    await flow.on_device_message(fallen("SXB777", now_ms()))
    assert flow.inbound["failed"] == 1
    assert rig.store.vehicles.by_serial("SXB777") is None  # enrolment undone with the event
    monkeypatch.undo()
    await flow.on_device_message(fallen("SXB777", now_ms() + 1))
    joined = rig.store.vehicles.by_serial("SXB777")
    assert joined is not None and joined.id == 4 and joined.network_id == 1
    assert open_alerts(rig, "vehicle-fallen") == 1
    await flow.on_device_message(telemetry("SXB778", SITE_A, battery=66))  # telemetry too
    newer = rig.store.vehicles.by_serial("SXB778")
    assert newer is not None and newer.id == 5 and newer.battery == 66
    assert flow.ignored["unknown-vehicle"] == 0


def test_identities_are_pruned_by_age_and_bounded(tmp_path: Path) -> None:
    now = [1000.0]
    db = open_test_database(tmp_path / "inbox.db")
    Store(db)  # migrated
    inbox = Inbox(db, lambda: now[0], ttl=60.0, max_identities=3)
    for i in range(5):
        now[0] += 1
        assert inbox.admit(bytes([i]) * 16)
    assert not inbox.admit(bytes([4]) * 16)  # already there
    assert inbox.prune() == 2 and inbox.count() == 3  # the oldest beyond the bound
    assert not inbox.seen(bytes([0]) * 16) and inbox.seen(bytes([4]) * 16)
    now[0] += 61
    assert inbox.prune() == 3 and inbox.count() == 0  # older than the TTL
    db.close()
