"""Taps through the flow: every refusal reason recorded and shown at the station, one command
per tap however often it is delivered, and no command sent twice across a crash."""

# ruff: noqa: F811  (the shared `rig` fixture is imported from tests.test_flow)

from __future__ import annotations

import asyncio
import json
import time

from dockgate.gateway.flow import CommandRunner, tap_key
from dockgate.gateway.flow._commands import build_command
from dockgate.gateway.protocol import StationStatus
from dockgate.sim.sdm import SdmTag
from tests.test_flow import READER_A, READER_B, Rig, new_uid, rig, until  # noqa: F401
from tests.test_taps import CLONE_REASONS, FILE, META, event


async def test_each_refusal_is_recorded_and_shown_to_the_rider(rig: Rig) -> None:
    await rig.start_gateway()
    rig.consume()
    st_a = await rig.station("ST01", {1: "SXB001", 2: "SXB002"})
    st_b = await rig.station("ST02", {1: "SXB003"})
    s = rig.store
    wrong_keys = SdmTag(
        uid=new_uid(), meta_read_key=FILE, file_read_key=META, profile="query-picc-enc-cmac"
    )
    stranger = SdmTag(
        uid=new_uid(), meta_read_key=META, file_read_key=FILE, profile="query-picc-enc-cmac"
    )
    unpaired = rig.rider(20, paired=False)
    blocked = rig.rider(21)
    s.set_blocked(21, True, "chargeback")
    newbie = rig.rider(22, first_purchase=False)
    broke = rig.rider(23, credit=50)  # below the 1.00 unlock price
    busy = rig.rider(24)
    s.upsert_vehicle(4, 1, "SXB004", battery=80)
    s.upsert_vehicle(5, 1, "SXB005", battery=80)
    s.start_trip(24, 4)
    s.start_trip(24, 5)  # max_simultaneous_rented_vehicle is 2
    fine = rig.rider(25)
    cases = [
        (wrong_keys, READER_A, "invalid_tag", None),
        (stranger, "reader-nowhere", "unknown_reader", None),
        (stranger, READER_A, "unknown_record", None),
        (unpaired, READER_A, "not_paired", None),
        (blocked, READER_A, "blocked", 21),
        (newbie, READER_A, "first_purchase_required", 22),
        (broke, READER_A, "no_credit", 23),
        (busy, READER_A, "max_rentals", 24),
        (fine, READER_B, "no_vehicle", 25),  # station B: only a 10 % vehicle
    ]
    for tag, reader, reason, rider in cases:
        d = await rig.flow.on_tap(rig.tap(tag, reader))  # type: ignore[union-attr]
        assert (d.accepted, d.status, d.reason, d.rider_id) == (False, "refused", reason, rider)
    await rig.flow.drain()  # type: ignore[union-attr]

    refused = rig.events("tap.refused")
    assert [e["reason"] for e in refused] == [c[2] for c in cases]
    assert refused[0]["detail"] in CLONE_REASONS  # wrong keys: the SUN reason is kept
    shown = [(f.reader, f.result, f.reason) for f in [*st_a.feedback, *st_b.feedback]]
    expected = [(r, "refused", why) for _, r, why, _ in cases if r != "reader-nowhere"]
    assert sorted(shown) == sorted(expected)
    assert st_a.counters.received["cmd-unlock-spot"] == 0 and not rig.commands("unlock-spot")
    scans = {r["product_id"]: r["scan_count"] for r in s.records()}
    assert sum(scans.values()) == 6  # every refusal with a known record counted its scan
    assert s.vehicle(1)["trip_id"] is None


async def test_the_same_tap_twice_makes_one_command(rig: Rig) -> None:
    flow = await rig.start_gateway()
    rig.consume()
    st_a = await rig.station("ST01", {1: "SXB001", 2: "SXB002"})
    tap = rig.tap(rig.rider(30))
    first = await flow.on_tap(tap)
    again = await flow.on_tap(tap)  # the reader loop handed it over again
    assert first.status == "unlocked" and again.status == "duplicate"
    flow = await rig.start_gateway()  # a restart, then the same tap re-delivered
    rig.consume()
    await flow.recover()
    assert (await flow.on_tap(tap)).status == "duplicate"
    await until(lambda: rig.store.vehicle(1)["trip_id"], what="trip started")
    await rig.flow.drain()  # type: ignore[union-attr]
    assert len(rig.commands("unlock-spot")) == 1
    assert st_a.counters.received["cmd-unlock-spot"] == 1
    assert len(rig.events("tap.accepted")) == 1


async def test_crash_between_journal_and_send_sends_once_after_recover(rig: Rig) -> None:
    flow = await rig.start_gateway()
    st_a = await rig.station("ST01", {1: "SXB001"})
    decision, entry = flow.prepare(rig.tap(rig.rider(31)))
    assert decision.status == "unlocking" and entry is not None
    assert rig.store.command(entry["id"])["state"] == "journaled"
    # crash: nothing was sent; a new gateway starts on the same database
    flow = await rig.start_gateway()
    rig.consume()
    report = await flow.recover()
    assert report.resent == [entry["id"]] and not report.unknown
    await until(lambda: rig.store.vehicle(1)["trip_id"], what="trip started")
    await flow.drain()
    flow = await rig.start_gateway()  # another restart: nothing left to settle
    again = await flow.recover()
    assert (again.resent, again.unknown, again.dropped) == ([], [], [])
    assert st_a.counters.received["cmd-unlock-spot"] == 1
    assert rig.store.command(entry["id"])["state"] == "acked"


async def test_crash_after_send_is_never_resent_and_status_reconciles(rig: Rig) -> None:
    flow = await rig.start_gateway()
    st_a = await rig.station("ST01", {1: "SXB001", 2: "SXB002"})
    st_a.auto_release = False
    # tap 1: marked sent and really published, then the gateway died before the ack
    _, reached = flow.prepare(rig.tap(rig.rider(32)))
    # tap 2: marked sent, but the process died before the publish
    _, lost = flow.prepare(rig.tap(rig.rider(33)))
    assert reached is not None and lost is not None
    for e in (reached, lost):
        rig.store.mark_command(e["id"], "sent")
    device, fields, _ = CommandRunner.parse(reached)  # type: ignore[misc]
    out = await rig.driver.send_command(  # type: ignore[union-attr]
        device, build_command(fields, reached["idempotency_key"])
    )
    assert out.ok
    flow = await rig.start_gateway()  # the retained status arrives on subscribe
    rig.consume()
    report = await flow.recover()
    assert sorted(report.unknown) == sorted([reached["id"], lost["id"]]) and not report.resent
    for e in (reached, lost):
        assert rig.store.command(e["id"])["state"] == "timeout"
        assert json.loads(rig.store.command(e["id"])["outcome"])["status"] == "unknown"
    # the rider still there takes the vehicle whose spot did open: the trip starts
    st_a.undock(json.loads(reached["args"])["cmd"]["spot"])
    trip = await until(lambda: rig.store.open_trips(32), what="trip of the unlocked spot")
    assert trip[0]["vehicle_id"] == json.loads(reached["args"])["ctx"]["vehicle_id"]
    # the spot that never got the command is still locked: the next status cancels it
    await until(
        lambda: any(e["rider_id"] == 33 for e in rig.events("rental.cancelled")),
        timeout=15,
        what="status reconcile",
    )
    await flow.drain()
    assert st_a.counters.received["cmd-unlock-spot"] == 1  # never sent again
    assert not rig.store.open_trips(33)


async def test_stale_journaled_command_is_dropped_not_sent(rig: Rig) -> None:
    flow = await rig.start_gateway(resend_max_age=0.2)
    st_a = await rig.station("ST01", {1: "SXB001"})
    _, entry = flow.prepare(rig.tap(rig.rider(34)))
    assert entry is not None
    time.sleep(0.3)
    flow = await rig.start_gateway(resend_max_age=0.2)
    report = await flow.recover()
    assert report.dropped == [entry["id"]]
    assert rig.store.command(entry["id"])["state"] == "failed"
    assert st_a.counters.received["cmd-unlock-spot"] == 0


async def test_a_replay_is_refused_and_shown_not_folded_into_the_original(rig: Rig) -> None:
    flow = await rig.start_gateway()
    rig.consume()
    await rig.station("ST01", {1: "SXB001", 2: "SXB002"})
    st_b = await rig.station("ST02", {1: "SXB003"})
    tag = rig.rider(50)
    url = tag.next_url()
    original = rig.handler.handle(event(url, time.monotonic(), uid=tag.uid, reader=READER_A))
    assert (await flow.on_tap(original)).status == "unlocked"
    # the same message, copied and presented at another reader: same UID and read counter
    replay = rig.handler.handle(event(url, time.monotonic(), uid=tag.uid, reader=READER_B))
    assert not replay.accepted and replay.read_ctr == original.read_ctr
    assert tap_key(replay) != tap_key(original)
    d = await flow.on_tap(replay)
    assert (d.status, d.reason, d.detail) == ("refused", "invalid_tag", "replayed")
    assert (await flow.on_tap(replay)).status == "duplicate"  # the same tap handed over again
    await until(lambda: st_b.feedback, what="the refusal shown at station B")
    await flow.drain()
    refused = rig.events("tap.refused")
    assert [(e["reason"], e["detail"], e["reader"]) for e in refused] == [
        ("invalid_tag", "replayed", READER_B)
    ]
    assert [(f.reader, f.result, f.reason) for f in st_b.feedback] == [
        (READER_B, "refused", "invalid_tag")
    ]
    assert len(rig.events("tap.accepted")) == 1 and len(rig.commands("unlock-spot")) == 1


async def test_every_read_error_is_refused_and_recorded(rig: Rig) -> None:
    flow = await rig.start_gateway()
    rig.consume()
    st_a = await rig.station("ST01", {1: "SXB001"})
    errors = [
        rig.handler.handle(event(None, time.monotonic(), uid=None, reader=READER_A, error=why))
        for why in ("io", "io", "removed")
    ]
    assert len({tap_key(t) for t in errors}) == 3  # no URL, no counter: reader + read time
    decisions = [await flow.on_tap(t) for t in errors]
    assert [(d.status, d.detail) for d in decisions] == [
        ("refused", "io"),
        ("refused", "io"),
        ("refused", "removed"),
    ]
    assert (await flow.on_tap(errors[1])).status == "duplicate"
    await until(lambda: len(st_a.feedback) == 3, what="three refusals shown")
    await flow.drain()
    assert [e["detail"] for e in rig.events("tap.refused")] == ["io", "io", "removed"]


def _unknown_rental(rig: Rig, flow_rider: int) -> tuple[dict, int]:
    """A tap journaled and marked sent, whose publish is still on its way at the crash."""
    assert rig.flow is not None
    _, entry = rig.flow.prepare(rig.tap(rig.rider(flow_rider)))
    assert entry is not None
    rig.store.mark_command(entry["id"], "sent")
    return entry, json.loads(entry["args"])["cmd"]["spot"]


async def _deliver_late(rig: Rig, entry: dict) -> None:
    """The unlock reaches the station after the restart (same cmd_id: a late delivery)."""
    device, fields, _ = CommandRunner.parse(entry)  # type: ignore[misc]
    out = await rig.driver.send_command(  # type: ignore[union-attr]
        device, build_command(fields, entry["idempotency_key"])
    )
    assert out.ok, out


async def test_a_retained_status_from_before_the_unlock_never_cancels_an_unknown_rental(
    rig: Rig,
) -> None:
    await rig.start_gateway(settle_margin=6.0)
    st_a = await rig.station("ST01", {1: "SXB001"})
    st_a.auto_release = False
    entry, spot = _unknown_rental(rig, 40)
    flow = await rig.start_gateway(settle_margin=6.0)  # restart: the retained status comes
    rig.consume()
    assert (await flow.recover()).unknown == [entry["id"]]
    await until(
        lambda: any(m.retained and isinstance(m.payload, StationStatus) for m in rig.seen),
        what="the retained status (spot locked, vehicle in)",
    )
    await asyncio.sleep(0.2)
    assert flow.rentals and not rig.events("rental.cancelled")
    await _deliver_late(rig, entry)
    st_a.undock(spot)
    trip = await until(lambda: rig.store.open_trips(40), what="the rider's trip")
    assert trip[0]["vehicle_id"] == json.loads(entry["args"])["ctx"]["vehicle_id"]
    await flow.drain()
    assert not rig.events("rental.cancelled")
    assert [e["command_id"] for e in rig.events("trip.started")] == [entry["id"]]


async def test_an_unknown_rental_cancelled_by_a_fresh_status_still_starts_a_late_trip(
    rig: Rig,
) -> None:
    await rig.start_gateway(settle_margin=0.2)
    st_a = await rig.station("ST01", {1: "SXB001"})
    st_a.auto_release = False
    entry, spot = _unknown_rental(rig, 41)
    flow = await rig.start_gateway(settle_margin=0.2)
    rig.consume()
    await flow.recover()
    # the station's heartbeat (every 3 s here), stamped after the send: still locked
    cancelled = await until(
        lambda: rig.events("rental.cancelled"), timeout=8, what="fresh status cancels"
    )
    assert [c["reason"] for c in cancelled] == ["unlock_not_done"] and not flow.rentals
    assert any(not m.retained and isinstance(m.payload, StationStatus) for m in rig.seen)
    await _deliver_late(rig, entry)  # it reached the station after all
    st_a.undock(spot)
    trip = await until(lambda: rig.store.open_trips(41), what="the trip from the tombstone")
    assert trip[0]["vehicle_id"] == json.loads(entry["args"])["ctx"]["vehicle_id"]
    await flow.drain()
    assert [e["command_id"] for e in rig.events("trip.started")] == [entry["id"]]
    assert not flow.tombstones
