"""The durable outbox: cursors, idempotency, priority classes, bounds, drops, durability; on
both engines."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dockgate.gateway.outbox import Outbox, Priority
from tests.support.stores import database_target, open_test_database

pytestmark = pytest.mark.engines("sqlite", "postgresql")


def make(tmp_path, **kwargs) -> Outbox:
    return Outbox(open_test_database(tmp_path / "outbox.db"), **kwargs)


def test_cursors_increase_and_pages_follow_them(tmp_path) -> None:
    box = make(tmp_path)
    cursors = [box.append("e", {"i": i}, idempotency_key=f"k{i}") for i in range(25)]
    assert cursors == sorted(cursors) and len(set(cursors)) == 25
    seen, cursor = [], 0
    while page := box.read(cursor, 10):
        seen += [e.payload["i"] for e in page]
        cursor = page[-1].cursor
    assert seen == list(range(25))


def test_repeated_idempotency_key_returns_first_cursor(tmp_path) -> None:
    box = make(tmp_path)
    first = box.append("trip.ended", {"trip": 1}, idempotency_key="trip:1:end")
    again = box.append("trip.ended", {"trip": 1}, idempotency_key="trip:1:end")
    assert first == again and len(box.read()) == 1
    assert box.stats()[Priority.STATE].appended == 1


def test_ack_forgets_and_cursors_never_reuse(tmp_path) -> None:
    box = make(tmp_path)
    for i in range(10):
        box.append("e", i, idempotency_key=f"k{i}", priority=Priority(i % len(Priority)))
    assert box.ack(6) == 6
    assert [e.cursor for e in box.read(0)] == [7, 8, 9, 10]
    assert sum(box.pending().values()) == 4 and box.acked_cursor == 6
    box.ack(10)
    assert box.append("e", 1, idempotency_key="new") == 11
    assert box.ack(3) == 0  # acking an older cursor again is harmless


def test_a_reader_never_sees_an_event_appear_behind_its_cursor(tmp_path) -> None:
    """One writer commits in cursor order, so what a reader has seen is never preceded by
    an event committed later; a rolled-back append is never seen (on PostgreSQL its number
    stays unused: a sequence does not give numbers back; SQLite's counter rolls back)."""
    box = make(tmp_path)
    seen = [e.cursor for e in box.read(0)]
    for n in range(6):
        if n == 3:
            with contextlib.suppress(RuntimeError), box.db.transaction():
                box.append("e", n, idempotency_key="undone", priority=Priority.OUTCOME)
                raise RuntimeError("rolled back")
        box.append("e", n, idempotency_key=f"k{n}", priority=Priority.OUTCOME)
        page = box.read(seen[-1] if seen else 0)
        assert [e.cursor for e in box.read(0)] == seen + [e.cursor for e in page]
        seen += [e.cursor for e in page]
    assert seen == sorted(set(seen)) and len(seen) == 6
    assert "undone" not in {e.idempotency_key for e in box.read(0)}
    assert box.last_cursor == seen[-1] and box.pending()[Priority.OUTCOME] == 6


def test_state_compacts_by_key_and_counts_it(tmp_path) -> None:
    box = make(tmp_path)
    for battery in (90, 80, 70):
        box.append(
            "vehicle.state",
            {"battery": battery},
            idempotency_key=f"v1:{battery}",
            compact_key="vehicle:1",
        )
    box.append("vehicle.state", {"battery": 50}, idempotency_key="v2", compact_key="vehicle:2")
    events = box.read()
    assert [e.payload["battery"] for e in events] == [70, 50]
    assert box.stats()[Priority.STATE].compacted == 2
    assert box.pending()[Priority.STATE] == 2


def test_class_bound_drops_oldest_and_counts(tmp_path) -> None:
    box = make(tmp_path, limits={Priority.STATE: 5})
    for i in range(12):
        box.append("spot.undocked", i, idempotency_key=f"s{i}", priority=Priority.STATE)
    assert [e.payload for e in box.read()] == [7, 8, 9, 10, 11]
    assert box.stats()[Priority.STATE].dropped == 7


def test_alerts_and_outcomes_are_never_dropped_state_gives_way(tmp_path) -> None:
    """Past every bound, only STATE gives way: alerts and outcomes (trips, command
    outcomes) all stay, and the outbox says it is over its bound."""
    box = make(tmp_path, max_pending=10, limits={Priority.CRITICAL: 1, Priority.OUTCOME: 1})
    for i in range(4):
        box.append("s", i, idempotency_key=f"s{i}", priority=Priority.STATE)
        box.append("o", i, idempotency_key=f"o{i}", priority=Priority.OUTCOME)
    for i in range(20):
        box.append("alert", i, idempotency_key=f"c{i}", priority=Priority.CRITICAL)
    for i in range(4, 8):  # outcomes still arrive, and are kept, past the bound
        box.append("o", i, idempotency_key=f"o{i}", priority=Priority.OUTCOME)
    pending = box.pending()
    assert pending[Priority.CRITICAL] == 20  # over every bound, and still all there
    assert pending[Priority.OUTCOME] == 8
    assert pending[Priority.STATE] == 0
    stats = box.stats()
    assert stats[Priority.STATE].dropped == 4
    assert stats[Priority.CRITICAL].dropped == stats[Priority.OUTCOME].dropped == 0
    assert box.over_bound()
    assert [e.payload for e in box.read(0, 100) if e.kind == "o"] == list(range(8))


def test_state_gives_way_oldest_first(tmp_path) -> None:
    box = make(tmp_path, max_pending=6)
    for i in range(4):
        box.append("s", i, idempotency_key=f"s{i}", priority=Priority.STATE)
    for i in range(4):
        box.append("o", i, idempotency_key=f"o{i}", priority=Priority.OUTCOME)
    assert box.pending()[Priority.STATE] == 2 and box.pending()[Priority.OUTCOME] == 4
    assert [e.payload for e in box.read() if e.kind == "s"] == [2, 3]  # the newest stay
    assert not box.over_bound()


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 5)), max_size=60))
def test_counters_match_rows(tmp_path_factory, ops) -> None:
    box = make(
        tmp_path_factory.mktemp("p"),
        max_pending=15,
        limits={Priority.STATE: 6},
    )
    for n, (priority, key) in enumerate(ops):
        box.append(
            "e",
            n,
            idempotency_key=f"k{n}",
            priority=Priority(priority),
            compact_key=f"c{key}" if key else None,
        )
    rows = dict(
        box.db.conn.execute(
            "SELECT priority, count(*) FROM outbox_events GROUP BY priority"
        ).fetchall()
    )
    for priority, count in box.pending().items():
        assert rows.get(int(priority), 0) == count
    stats = box.stats()
    for priority in Priority:
        s = stats[priority]
        assert s.appended == s.pending + s.dropped + s.compacted + s.acked
    assert stats[Priority.CRITICAL].dropped == stats[Priority.OUTCOME].dropped == 0
    pending = box.pending()
    kept = pending[Priority.CRITICAL] + pending[Priority.OUTCOME]
    assert pending[Priority.STATE] <= 6
    assert sum(pending.values()) <= max(15, kept)  # only alerts and outcomes pass the bound


def test_listener_fires_after_commit_only(tmp_path) -> None:
    box = make(tmp_path)
    seen: list[int] = []
    box.add_listener(seen.append)
    with box.db.transaction():
        cursor = box.append("e", 1, idempotency_key="a")
        assert seen == []
    assert seen == [cursor]


def test_events_survive_sigkill(tmp_path) -> None:
    """A child appends and is killed; every event it was told was committed is there."""
    path = tmp_path / "killed.db"
    script = textwrap.dedent(f"""
        import os, signal, sys
        from dockgate.gateway.outbox import Outbox, Priority
        from dockgate.gateway.store import open_database
        box = Outbox(open_database({database_target(path)!r}))
        for i in range(500):
            box.append("e", i, idempotency_key=f"k{{i}}", priority=Priority.OUTCOME)
            if i == 300:
                print(i, flush=True)
                os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
    )
    assert proc.returncode == -9 and proc.stdout.strip() == "300"
    box = Outbox(open_test_database(path))
    assert [e.payload for e in box.read(0, 1000)] == list(range(301))
    assert box.pending()[Priority.OUTCOME] == 301
    assert box.last_cursor == 301


def test_typed_events_store_their_fields_in_order_under_their_kind_and_class(tmp_path) -> None:
    """A typed event is stored as the JSON the backend reads: its fields, in order."""
    from dockgate.gateway.outbox import events

    box = make(tmp_path)
    started = events.TripStarted(7, 3, 1, 100, 1000, 12, 1_700_000_000.5)
    box.publish(started, idempotency_key="trip:7:started")
    settled = events.CommandSettled(
        12, "unlock-spot", "spot", 1000, None, "timeout", "unknown", "gateway restarted", None, 2.0
    )
    box.publish(settled, idempotency_key="cmd:12:timeout")
    sent = events.CommandSettled(13, "lock-vehicle", "vehicle", 1, 7, "acked", "done", None, 1, 3.0)
    undocked = events.SpotUndocked(100, 2, "SXB001", 1, 4.0)
    state = events.VehicleState(1, 45.0, 9.0, 80, 0.0, "locked", 5.0)
    box.publish_many(
        [
            (sent, "cmd:13:acked", None),
            (undocked, undocked.key(), None),
            (state, "vehicle:1:state:5000", "vehicle:1"),
            (events.VehicleState(1, 45.0, 9.0, 79, 0.0, "locked", 6.0), "v:6", "vehicle:1"),
        ]
    )
    rows = box.read_raw(0, 100)
    assert [(r[2], r[3], r[1]) for r in rows] == [
        ("trip.started", "trip:7:started", Priority.OUTCOME),
        ("command.outcome", "cmd:12:timeout", Priority.OUTCOME),
        ("command.outcome", "cmd:13:acked", Priority.OUTCOME),
        (
            "spot.undocked",
            "spot.undocked:100:{'spot': 2, 'serial': 'SXB001', 'vehicle_id': 1}:4.0",
            Priority.STATE,
        ),
        ("vehicle.state", "v:6", Priority.STATE),  # compacted: only the latest state stays
    ]
    assert [bytes(r[5]) for r in rows[:4]] == [
        b'{"trip_id":7,"rider_id":3,"vehicle_id":1,"station_id":100,"spot_id":1000,'
        b'"command_id":12,"at":1700000000.5}',
        b'{"command_id":12,"command":"unlock-spot","target_kind":"spot","target_id":1000,'
        b'"trip_id":null,"state":"timeout","status":"unknown","reason":"gateway restarted",'
        b'"at":2.0}',  # no attempts: the command never reached the driver in this run
        b'{"command_id":13,"command":"lock-vehicle","target_kind":"vehicle","target_id":1,'
        b'"trip_id":7,"state":"acked","status":"done","reason":null,"attempts":1,"at":3.0}',
        b'{"station_id":100,"spot":2,"serial":"SXB001","vehicle_id":1,"at":4.0}',
    ]


def test_a_rolled_back_append_leaves_no_gap_in_the_cursors(tmp_path) -> None:
    """A backend reading by cursor cannot tell a skipped number from a lost event: an append
    whose transaction rolls back (a killed leader, a refused batch) gives its cursors back,
    on PostgreSQL too, whose sequences never do."""
    box = make(tmp_path)
    first = box.append_many([("a", {}, f"k{i}", Priority.STATE, None) for i in range(3)])
    with contextlib.suppress(RuntimeError), box.db.transaction():
        box.append_many([("a", {}, f"lost{i}", Priority.STATE, None) for i in range(5)])
        raise RuntimeError("the batch fails after its appends")
    after = box.append("a", {}, idempotency_key="k-next")
    assert first == [1, 2, 3]
    assert after == 4
    assert [e.cursor for e in box.read(0)] == [1, 2, 3, 4]
    assert box.last_cursor == 4
