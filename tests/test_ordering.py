"""Per-device ordering and clock skew, in process: state is only ever replaced by newer state.

A vehicle's position, battery and lock (and a station's status) are updated only by a message
whose device time is later than the last one applied; an older one (``ts=0``, a late
delivery) changes nothing and is counted ``stale``. A device whose clock is implausible (10
minutes fast or slow here) is still heard: its messages carry the gateway's receive time,
it is flagged with its offset, and its dock and undock events still start and end trips.
The real store, outbox, rules engine and SUN verifier; messages built as the MQTT driver
hands them over (``tests/plugins/flow.py``).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from dockgate.gateway.flow._clocks import PLAUSIBLE_TRUST
from dockgate.gateway.protocol import (
    Channel,
    DeviceMessage,
    SpotDocked,
    SpotUndocked,
    Telemetry,
    decode,
    encode,
    now_ms,
)
from tests.plugins.flow import SITE_A, SITE_B, FlowRig, station, telemetry, until, vehicle

pytestmark = pytest.mark.timeout(60)

MINUTE = 60_000  # ms


def report(serial: str, at: tuple[float, float], battery: int, ts: int, **decode_kw: Any) -> Any:
    """A telemetry message of ``serial`` stamped ``ts``, decoded with ``decode_kw``
    (``received_at``: when the gateway got it)."""
    payload = Telemetry(
        ts=ts,
        device_id=serial,
        lat=at[0],
        lng=at[1],
        gps_accuracy=3.0,
        speed=0.0,
        battery=battery,
        lock="locked",
        speed_mode=2,
        max_speed=25,
        odometer=0,
    )
    return decode(vehicle(serial).topic(Channel.TELEMETRY), encode(payload), **decode_kw)


def where(rig: FlowRig, vehicle_id: int) -> tuple[int | None, float | None, float | None]:
    v = rig.store.vehicles.get(vehicle_id)
    return v.battery, v.lat, v.lon


def states(rig: FlowRig, vehicle_id: int) -> list[int]:
    """The battery of each ``vehicle.state`` event of the vehicle, in order."""
    return [e["battery"] for e in rig.events("vehicle.state") if e["vehicle_id"] == vehicle_id]


# --- ordering ---------------------------------------------------------------------------------
async def test_a_report_stamped_zero_after_a_fresh_one_changes_nothing(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    await flow.on_device_message(telemetry("SXB001", SITE_A, battery=77))
    assert where(rig, 1) == (77, *SITE_A)
    zero = report("SXB001", SITE_B, 11, 0)
    assert zero.clock_offset_ms is not None  # 1970: a skewed clock, restamped
    await flow.on_device_message(zero)
    assert where(rig, 1) == (77, *SITE_A)  # never moved back
    assert flow.inbound["stale"] == 1
    assert states(rig, 1) == [77]  # no vehicle.state for it either
    assert flow.clock_skewed_devices() == {"1/vehicle/SXB001": zero.clock_offset_ms}
    await flow.on_device_message(telemetry("SXB001", SITE_B, battery=76))
    assert where(rig, 1) == (76, *SITE_B)
    assert flow.clock_skewed_devices() == {}  # a plausible clock again: no longer flagged


async def test_a_report_a_minute_old_after_a_fresh_one_is_stale(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    fresh = now_ms()
    await flow.on_device_message(telemetry("SXB001", SITE_A, battery=77, ts=fresh))
    late = telemetry("SXB001", SITE_B, battery=12, ts=fresh - MINUTE)
    assert late.clock_offset_ms is None  # a plausible clock: merely an old message
    await flow.on_device_message(late)
    assert where(rig, 1) == (77, *SITE_A)
    assert (flow.inbound["stale"], flow.inbound["clock_skew"]) == (1, 0)
    assert states(rig, 1) == [77]
    # the same report again (a redelivery) is no newer either
    await flow.on_device_message(telemetry("SXB001", SITE_A, battery=77, ts=fresh))
    assert flow.inbound["stale"] == 2 and states(rig, 1) == [77]


async def test_in_one_batch_the_newest_report_wins_whatever_the_arrival_order(
    rig: FlowRig,
) -> None:
    flow = await rig.start_gateway()
    t = now_ms()
    batch = [
        telemetry("SXB001", SITE_B, battery=50, ts=t),
        telemetry("SXB002", SITE_B, battery=40, ts=t),
        telemetry("SXB001", SITE_A, battery=49, ts=t - 10_000),  # older, arrives later
        telemetry("SXB002", SITE_A, battery=39, ts=t + 10_000),  # newer
    ]
    await flow.on_device_messages(batch)
    assert where(rig, 1) == (50, *SITE_B)
    assert where(rig, 2) == (39, *SITE_A)
    assert flow.inbound["stale"] == 1
    assert states(rig, 1) == [50] and states(rig, 2) == [39]  # compacted: the latest counts


async def test_the_last_applied_clock_survives_a_restart(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    t = now_ms()
    await flow.on_device_message(telemetry("SXB001", SITE_A, battery=70, ts=t))
    flow = await rig.start_gateway()  # a new flow on the same database
    await flow.on_device_message(telemetry("SXB001", SITE_B, battery=69, ts=t - 500))
    assert where(rig, 1) == (70, *SITE_A) and flow.inbound["stale"] == 1
    await flow.on_device_message(telemetry("SXB001", SITE_B, battery=68, ts=t + 500))
    assert where(rig, 1) == (68, *SITE_B)


async def test_a_future_stamp_is_restamped_and_cannot_pin_the_vehicle(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    ahead = report("SXB001", SITE_B, 60, now_ms() + 10 * MINUTE)
    assert ahead.clock_offset_ms is not None and ahead.clock_offset_ms > 9 * MINUTE
    await flow.on_device_message(ahead)  # heard: its state applies, at the receive time
    assert where(rig, 1) == (60, *SITE_B)
    assert flow.inbound["clock_skew"] == 1
    assert flow.clock_skewed_devices()["1/vehicle/SXB001"] == ahead.clock_offset_ms
    time.sleep(0.002)
    await flow.on_device_message(telemetry("SXB001", SITE_A, battery=59))  # an honest one
    assert where(rig, 1) == (59, *SITE_A)  # not pinned ten minutes ahead
    assert flow.inbound["stale"] == 0


async def test_a_clock_that_stays_wrong_is_heard_once_the_plausible_one_lapses(
    rig: FlowRig,
) -> None:
    """A lone implausible stamp right after a plausible report is an old message; a device
    whose clock stays wrong (its RTC reset) is heard again once that trust has run out."""
    flow = await rig.start_gateway()
    now = time.time()
    await flow.on_device_message(report("SXB001", SITE_A, 80, round(now * 1000), received_at=now))
    soon = now + 5.0
    await flow.on_device_message(report("SXB001", SITE_B, 79, 1000, received_at=soon))
    assert where(rig, 1) == (80, *SITE_A) and flow.inbound["stale"] == 1
    later = now + PLAUSIBLE_TRUST + 1.0
    await flow.on_device_message(report("SXB001", SITE_B, 78, 2000, received_at=later))
    assert where(rig, 1) == (78, *SITE_B)
    # restamped reports now follow one another by receive time
    await flow.on_device_message(report("SXB001", SITE_A, 77, 3000, received_at=later + 1))
    assert where(rig, 1) == (77, *SITE_A)


async def test_a_station_status_older_than_the_last_applied_is_stale(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    t = now_ms()
    spots = {1: (True, "SXB001"), 2: (True, "SXB002")}
    await rig.status("ST01", spots, ts=t)
    clock = rig.store.inbox.status_clock(1)
    assert clock is not None and clock.ts == t
    await rig.status("ST01", spots, ts=t - MINUTE)
    assert flow.inbound["stale"] == 1
    await rig.status("ST01", spots, ts=t, retained=True)  # the same one again: applied
    assert flow.inbound["stale"] == 1
    again = rig.store.inbox.status_clock(1)
    assert again is not None and again.ts == t and again.trusted_until >= clock.trusted_until


# --- clock skew: stations 10 minutes fast and 10 minutes slow --------------------------------
def skewed(device_id: str, model: Any, max_past_ms: int) -> DeviceMessage:
    topic = station(device_id).topic(Channel.SPOT)
    return decode(topic, encode(model), max_past_ms=max_past_ms)


@pytest.mark.parametrize(
    ("undock_skew", "dock_skew"),
    [(10 * MINUTE, -10 * MINUTE), (-10 * MINUTE, 10 * MINUTE)],
    ids=["undock-fast-dock-slow", "undock-slow-dock-fast"],
)
async def test_skewed_stations_still_start_and_end_trips(
    rig: FlowRig, undock_skew: int, dock_skew: int
) -> None:
    """Both stations' clocks are implausible: the fast one by default (more than 5 minutes
    ahead), the slow one for a site whose deliveries are never more than 5 minutes late
    (``max_past_ms``; by default a message 10 minutes old may be a late delivery, see
    :func:`test_a_slow_station_within_the_past_window_is_taken_as_it_says`)."""
    max_past_ms = 5 * MINUTE
    flow = await rig.start_gateway()
    decision = await flow.on_tap(rig.tap(rig.rider(7)))
    assert decision.status == "unlocked" and decision.spot == 1, decision
    undock = skewed(
        "ST01",
        SpotUndocked(
            ts=now_ms() + undock_skew,
            device_id="ST01",
            type="spot-undocked",
            spot=1,
            vehicle_id="SXB001",
        ),
        max_past_ms,
    )
    assert undock.clock_offset_ms is not None
    await flow.on_device_message(undock)
    trip_id = rig.store.vehicles.get(1).trip_id
    assert trip_id is not None and rig.store.trips.open(7)
    dock = skewed(
        "ST02",
        SpotDocked(
            ts=now_ms() + dock_skew,
            device_id="ST02",
            type="spot-docked",
            spot=2,
            vehicle_id="SXB001",
        ),
        max_past_ms,
    )
    await flow.on_device_message(dock)
    ended = rig.store.trips.get(trip_id)
    assert ended.ended_at is not None and (ended.end_station_id, ended.end_spot_id) == (2, 22)
    assert not rig.store.trips.open(7)
    assert [e["trip_id"] for e in rig.events("trip.ended")] == [trip_id]
    assert rig.store.vehicles.get(1).spot_id == 22
    flagged = flow.clock_skewed_devices()
    assert flagged.keys() == {"1/station/ST01", "1/station/ST02"}
    assert abs(flagged["1/station/ST01"] - undock_skew) < 5_000
    assert abs(flagged["1/station/ST02"] - dock_skew) < 5_000
    assert flow.inbound["clock_skew"] == 2 and flow.inbound["duplicate"] == 0
    await until(lambda: rig.port.commands("lock-vehicle", "SXB001"), what="vehicle locked")
    await flow.drain()


async def test_a_fast_station_is_heard_but_its_status_never_pins_the_next(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    spots = {1: (True, "SXB001")}
    await rig.status("ST01", spots, ts=now_ms() + 10 * MINUTE)  # restamped: receive time
    assert flow.clock_skewed_devices().keys() == {"1/station/ST01"}
    time.sleep(0.002)
    await rig.status("ST01", spots)  # its clock fixed: the next status applies at once
    assert flow.inbound["stale"] == 0
    assert flow.clock_skewed_devices() == {}


async def test_a_slow_station_within_the_past_window_is_taken_as_it_says(rig: FlowRig) -> None:
    """By default (``max_past_ms``: 24 h) a station 10 minutes slow is not flagged: its
    messages could be late deliveries. Its events count all the same: the trip ends."""
    flow = await rig.start_gateway()
    assert (await flow.on_tap(rig.tap(rig.rider(8)))).status == "unlocked"
    await rig.undock("ST01", 1, "SXB001")
    trip_id = rig.store.vehicles.get(1).trip_id
    assert trip_id is not None
    slow = SpotDocked(
        ts=now_ms() - 10 * MINUTE, device_id="ST02", type="spot-docked", spot=3, vehicle_id="SXB001"
    )
    msg = decode(station("ST02").topic(Channel.SPOT), encode(slow))
    assert msg.clock_offset_ms is None and msg.effective_ts == slow.ts
    await flow.on_device_message(msg)
    assert rig.store.trips.get(trip_id).ended_at is not None and not rig.store.trips.open(8)
    assert flow.clock_skewed_devices() == {} and flow.inbound["clock_skew"] == 0
    await flow.drain()
