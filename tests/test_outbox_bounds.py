"""Outbox bounds drop only what they say: STATE, oldest first; never a trip, a command outcome or
an alert. The old ``telemetry`` class and the ``outcome`` bound are gone, kept readable.
"""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest

from dockgate.gateway.daemon.settings import load_settings
from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.protocol import VehicleEvent, now_ms
from dockgate.gateway.store import Database
from dockgate.gateway.store._schema import MIGRATIONS
from tests.plugins.flow import SITE_A, SITE_B, FlowRig, telemetry, until, vehicle

OUTAGE_ALERTS = 30  # critical alerts while the backend is away: six times max_pending


@pytest.mark.engines("sqlite", "postgresql")
async def test_an_outage_past_max_pending_loses_no_trip_and_no_command_outcome(
    rig: FlowRig,
) -> None:
    """The backend is away (nothing acknowledged) while alerts alone pass ``max_pending``;
    then a whole ride happens. Every trip, tap and command outcome event is kept; only
    vehicle and spot state gave way."""
    rig.outbox = Outbox(rig.db, limits={Priority.STATE: 3}, max_pending=5)
    flow = await rig.start_gateway(enroll_vehicles=True)
    for n in range(OUTAGE_ALERTS):
        serial = f"OUT{n:03d}"
        fallen = VehicleEvent(ts=now_ms(), device_id=serial, type="vehicle-fallen")
        await rig.send(vehicle(serial), fallen)
    assert rig.outbox.pending()[Priority.CRITICAL] == OUTAGE_ALERTS
    assert rig.outbox.over_bound()

    card = rig.rider(7)
    decision = await flow.on_tap(rig.tap(card))
    assert decision.accepted and decision.status == "unlocked", decision
    await rig.undock("ST01", 1, "SXB001")
    trip_id = rig.store.vehicles.get(1).trip_id
    assert trip_id is not None
    await until(lambda: rig.port.commands("unlock-vehicle", "SXB001"), what="vehicle unlocked")
    for step in range(4):
        at = SITE_A if step < 2 else SITE_B
        await flow.on_device_message(telemetry("SXB001", at, speed=12.0, lock="unlocked"))
    await rig.dock("ST02", 2, "SXB001")
    await until(lambda: rig.port.commands("lock-vehicle", "SXB001"), what="vehicle locked")
    await flow.drain()

    events = rig.outbox.read(0, 10_000)
    kinds = [e.kind for e in events]
    assert [e.payload["trip_id"] for e in events if e.kind == "trip.started"] == [trip_id]
    [ended] = [e.payload for e in events if e.kind == "trip.ended"]
    assert ended["trip_id"] == trip_id and ended["cost"] == rig.store.trips.get(trip_id).cost
    assert kinds.count("tap.accepted") == 1
    settled = {e.payload["command"] for e in events if e.kind == "command.outcome"}
    assert {"unlock-spot", "unlock-vehicle", "lock-vehicle"} <= settled
    journal = rig.db.conn.execute(
        "SELECT count(*) FROM command_journal WHERE state IN ('acked', 'failed', 'timeout')"
    ).fetchone()[0]
    assert kinds.count("command.outcome") == journal  # one outcome per settled command
    assert kinds.count("alert.raised") == OUTAGE_ALERTS
    stats = rig.outbox.stats()
    assert stats[Priority.CRITICAL].dropped == stats[Priority.OUTCOME].dropped == 0
    assert stats[Priority.STATE].dropped > 0  # the bound was reached, and STATE gave way
    assert rig.outbox.pending()[Priority.STATE] == 0  # alerts and outcomes alone pass the bound


@pytest.mark.engines("sqlite")  # class 3 was only ever in SQLite files
def test_old_telemetry_class_events_join_state_with_their_counters(tmp_path: Path) -> None:
    """A database of an earlier version, with events in the removed class 3, opens: they
    are STATE events now, counted there, still served in order."""
    db = Database(tmp_path / "old.db")
    before = next(i for i, step in enumerate(MIGRATIONS) if "storage_probe" in step)
    db.migrate("store", MIGRATIONS[:before])
    for cursor, priority in ((1, 3), (2, 2), (3, 3)):
        db.conn.execute(
            "INSERT INTO outbox_events(cursor, priority, kind, idempotency_key, created_at,"
            " payload) VALUES (?, ?, 'e', ?, 0, ?)",
            (cursor, priority, f"k{cursor}", orjson.dumps(cursor)),
        )
    db.conn.execute("UPDATE outbox_stats SET pending=2, appended=3, dropped=1 WHERE priority=3")
    db.conn.execute("UPDATE outbox_stats SET pending=1, appended=1 WHERE priority=2")
    box = Outbox(db)
    assert [(e.cursor, e.priority) for e in box.read()] == [(n, Priority.STATE) for n in (1, 2, 3)]
    assert box.pending() == {Priority.CRITICAL: 0, Priority.OUTCOME: 0, Priority.STATE: 3}
    state = box.stats()[Priority.STATE]
    assert (state.pending, state.appended, state.dropped) == (3, 4, 1)
    db.close()


def test_old_outbox_keys_are_accepted_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = tmp_path / "dockgate.toml"
    config.write_text(
        '[site]\ndata_dir = "state"\n[outbox]\noutcome = 10\ntelemetry = 5\nmax_pending = 50\n'
    )
    settings = load_settings(config)
    assert settings.outbox.max_pending == 50
    assert [w.split(" is ")[0] for w in settings.outbox.deprecations()] == [
        "[outbox] outcome",
        "[outbox] telemetry",
    ]
    from dockgate.gateway.daemon.app import Daemon

    with caplog.at_level(logging.WARNING, logger="dockgate.daemon"):
        daemon = Daemon(settings)
    try:
        assert daemon.outbox.limits == {
            Priority.CRITICAL: None,
            Priority.OUTCOME: None,
            Priority.STATE: 200_000,
        }
        assert sum("[outbox] telemetry is ignored" in r.getMessage() for r in caplog.records) == 1
    finally:
        daemon.close()
