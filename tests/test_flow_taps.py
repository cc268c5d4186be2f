"""Taps through the flow: every refusal reason recorded and shown at the station, one command
per tap however often it is delivered, and no command sent twice across a crash.

A crash is a new flow on the same database (``rig.start_gateway()``); what reached the stations
is what the fake port was given, by the flow or, before a crash, by the test itself."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from dockgate.gateway.flow import CommandRunner, tap_key
from dockgate.gateway.flow._commands import build_command
from dockgate.gateway.store import JournalEntry
from dockgate.sim.sdm import SdmTag
from tests.plugins.flow import READER_A, READER_B, FlowRig, new_uid, until
from tests.support.taps import CLONE_REASONS, FILE, META, event

pytestmark = pytest.mark.engines("sqlite", "postgresql")


async def test_each_refusal_is_recorded_and_shown_to_the_rider(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    s = rig.store
    wrong_keys = SdmTag(
        uid=new_uid(), meta_read_key=FILE, file_read_key=META, profile="query-picc-enc-cmac"
    )
    stranger = SdmTag(
        uid=new_uid(), meta_read_key=META, file_read_key=FILE, profile="query-picc-enc-cmac"
    )
    unpaired = rig.rider(20, paired=False)
    blocked = rig.rider(21)
    s.riders.set_blocked(21, True, "chargeback")
    newbie = rig.rider(22, first_purchase=False)
    broke = rig.rider(23, credit=50)  # below the 1.00 unlock price
    busy = rig.rider(24)
    s.vehicles.upsert(4, 1, "SXB004", battery=80)
    s.vehicles.upsert(5, 1, "SXB005", battery=80)
    s.trips.start(24, 4)
    s.trips.start(24, 5)  # max_simultaneous_rented_vehicle is 2
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
        d = await flow.on_tap(rig.tap(tag, reader))
        assert (d.accepted, d.status, d.reason, d.rider_id) == (False, "refused", reason, rider)
    await flow.drain()

    refused = rig.events("tap.refused")
    assert [e["reason"] for e in refused] == [c[2] for c in cases]
    assert refused[0]["detail"] in CLONE_REASONS  # wrong keys: the SUN reason is kept
    shown = [*rig.port.feedback("ST01"), *rig.port.feedback("ST02")]
    expected = [(r, "refused", why) for _, r, why, _ in cases if r != "reader-nowhere"]
    assert sorted(shown) == sorted(expected)
    assert not rig.port.commands("unlock-spot") and not rig.commands("unlock-spot")
    scans = {r.product_id: r.scan_count for r in s.records.all()}
    assert sum(scans.values()) == 6  # every refusal with a known record counted its scan
    assert s.vehicles.get(1).trip_id is None


async def test_the_same_tap_twice_makes_one_command(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    tap = rig.tap(rig.rider(30))
    first = await flow.on_tap(tap)
    again = await flow.on_tap(tap)  # the reader loop handed it over again
    assert first.status == "unlocked" and again.status == "duplicate"
    flow = await rig.start_gateway()  # a restart, then the same tap re-delivered
    await flow.recover()
    assert (await flow.on_tap(tap)).status == "duplicate"
    await rig.undock("ST01", 1, "SXB001")  # the rental came back with the restart
    assert rig.store.vehicles.get(1).trip_id is not None
    await flow.drain()
    assert len(rig.commands("unlock-spot")) == 1
    assert len(rig.port.commands("unlock-spot", "ST01")) == 1
    assert len(rig.events("tap.accepted")) == 1


async def test_crash_between_journal_and_send_sends_once_after_recover(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
    decision, entry = flow.prepare(rig.tap(rig.rider(31)))
    assert decision.status == "unlocking" and entry is not None
    assert rig.store.commands.get(entry.id).state == "journaled"
    # crash: nothing was sent; a new gateway starts on the same database
    flow = await rig.start_gateway()
    report = await flow.recover()
    assert report.resent == [entry.id] and not report.unknown
    await rig.undock("ST01", 1, "SXB001")
    assert rig.store.vehicles.get(1).trip_id is not None
    await flow.drain()
    flow = await rig.start_gateway()  # another restart: nothing left to settle
    again = await flow.recover()
    assert (again.resent, again.unknown, again.dropped) == ([], [], [])
    assert len(rig.port.commands("unlock-spot", "ST01")) == 1
    assert rig.store.commands.get(entry.id).state == "acked"


def _unknown_rental(rig: FlowRig, rider: int) -> tuple[JournalEntry, int, str]:
    """A tap journaled and marked sent: the process died before its outcome came back.
    Returns the entry, the spot it opens and the vehicle in that spot."""
    _, entry = rig.running.prepare(rig.tap(rig.rider(rider)))
    assert entry is not None
    rig.store.commands.mark(entry.id, "sent")
    args = json.loads(entry.args)
    return entry, args["cmd"]["spot"], args["ctx"]["serial"]


async def _deliver(rig: FlowRig, entry: JournalEntry) -> None:
    """The unlock reaches the station (published before the crash, or a late delivery of it:
    the same cmd_id)."""
    parsed = CommandRunner.parse(entry)
    assert parsed is not None
    device, fields, _ = parsed
    out = await rig.port(device, build_command(fields, entry.idempotency_key))
    assert out.status == "done", out


async def test_crash_after_send_is_never_resent_and_status_reconciles(rig: FlowRig) -> None:
    await rig.start_gateway()
    reached, reached_spot, reached_serial = _unknown_rental(rig, 32)  # published, then died
    lost, lost_spot, lost_serial = _unknown_rental(rig, 33)  # died before the publish
    await _deliver(rig, reached)
    flow = await rig.start_gateway()
    report = await flow.recover()
    assert sorted(report.unknown) == sorted([reached.id, lost.id]) and not report.resent
    for e in (reached, lost):
        assert rig.store.commands.get(e.id).state == "timeout"
        outcome = rig.store.commands.get(e.id).outcome
        assert outcome is not None and json.loads(outcome)["status"] == "unknown"
    # the retained status arrives on subscribe: the opened spot, the other still locked
    spots = {reached_spot: (False, reached_serial), lost_spot: (True, lost_serial)}
    await rig.status("ST01", spots, retained=True)
    assert not rig.events("rental.cancelled")  # a retained status settles nothing
    # the rider still there takes the vehicle whose spot did open: the trip starts
    await rig.undock("ST01", reached_spot, reached_serial)
    trip = rig.store.trips.open(32)
    assert trip and trip[0].vehicle_id == json.loads(reached.args)["ctx"]["vehicle_id"]
    # the spot that never got the command is still locked: the next live status cancels it
    sent_at = rig.store.commands.get(lost.id).updated_at
    await rig.status("ST01", {lost_spot: (True, lost_serial)}, ts=round(sent_at * 1000) + 3000)
    assert any(e["rider_id"] == 33 for e in rig.events("rental.cancelled"))
    await flow.drain()
    assert len(rig.port.commands("unlock-spot")) == 1  # never sent again
    assert not rig.store.trips.open(33)


async def test_stale_journaled_command_is_dropped_not_sent(rig: FlowRig) -> None:
    flow = await rig.start_gateway(resend_max_age=0.2)
    _, entry = flow.prepare(rig.tap(rig.rider(34)))
    assert entry is not None
    time.sleep(0.3)
    flow = await rig.start_gateway(resend_max_age=0.2)
    report = await flow.recover()
    assert report.dropped == [entry.id]
    assert rig.store.commands.get(entry.id).state == "failed"
    assert not rig.port.commands("unlock-spot")
    assert not flow.rentals


async def test_a_replay_is_refused_and_shown_not_folded_into_the_original(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
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
    await until(lambda: rig.port.feedback("ST02"), what="the refusal shown at station B")
    refused = rig.events("tap.refused")
    assert [(e["reason"], e["detail"], e["reader"]) for e in refused] == [
        ("invalid_tag", "replayed", READER_B)
    ]
    assert rig.port.feedback("ST02") == [(READER_B, "refused", "invalid_tag")]
    assert len(rig.events("tap.accepted")) == 1 and len(rig.commands("unlock-spot")) == 1


async def test_every_read_error_is_refused_and_recorded(rig: FlowRig) -> None:
    flow = await rig.start_gateway()
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
    await flow.drain()
    assert len(rig.port.feedback("ST01")) == 3
    assert [e["detail"] for e in rig.events("tap.refused")] == ["io", "io", "removed"]


async def test_a_retained_status_from_before_the_unlock_never_cancels_an_unknown_rental(
    rig: FlowRig,
) -> None:
    await rig.start_gateway(settle_margin=6.0)
    entry, spot, serial = _unknown_rental(rig, 40)
    flow = await rig.start_gateway(settle_margin=6.0)  # restart: the retained status comes
    assert (await flow.recover()).unknown == [entry.id]
    sent_at = rig.store.commands.get(entry.id).updated_at
    # the retained status (spot locked, vehicle in), stamped after the send even, settles
    # nothing; nor does a live one within the settle margin
    await rig.status("ST01", {spot: (True, serial)}, retained=True, ts=round(sent_at * 1000) + 1)
    await rig.status("ST01", {spot: (True, serial)}, ts=round(sent_at * 1000) + 5000)
    await asyncio.sleep(0.05)
    assert flow.rentals and not rig.events("rental.cancelled")
    await _deliver(rig, entry)  # it reaches the station late
    await rig.undock("ST01", spot, serial)
    trip = rig.store.trips.open(40)
    assert trip and trip[0].vehicle_id == json.loads(entry.args)["ctx"]["vehicle_id"]
    await flow.drain()
    assert not rig.events("rental.cancelled")
    assert [e["command_id"] for e in rig.events("trip.started")] == [entry.id]


async def test_an_unknown_rental_cancelled_by_a_fresh_status_still_starts_a_late_trip(
    rig: FlowRig,
) -> None:
    await rig.start_gateway(settle_margin=0.2)
    entry, spot, serial = _unknown_rental(rig, 41)
    flow = await rig.start_gateway(settle_margin=0.2)
    await flow.recover()
    # the station's heartbeat, stamped after the send plus the margin: still locked
    sent_at = rig.store.commands.get(entry.id).updated_at
    await rig.status("ST01", {spot: (True, serial)}, ts=round(sent_at * 1000) + 300)
    cancelled = rig.events("rental.cancelled")
    assert [c["reason"] for c in cancelled] == ["unlock_not_done"] and not flow.rentals
    await _deliver(rig, entry)  # it reached the station after all
    await rig.undock("ST01", spot, serial)
    trip = rig.store.trips.open(41)
    assert trip and trip[0].vehicle_id == json.loads(entry.args)["ctx"]["vehicle_id"]
    await flow.drain()
    assert [e["command_id"] for e in rig.events("trip.started")] == [entry.id]
    assert not flow.tombstones
