"""The state store on both engines: migrations, fleet state, trips, the command journal, alerts.

Every test runs on SQLite and on PostgreSQL (``engines``), but for those about what only an
SQLite file has (its pragmas, the histories of its earlier versions).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path

import orjson
import pytest

from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.store import (
    AlertQuery,
    Conflict,
    Database,
    NewAlert,
    NotFound,
    Store,
    StoreError,
)
from dockgate.gateway.store._schema import MIGRATIONS
from tests.support.fleet import seed_fleet
from tests.support.stores import engine, open_test_database, open_test_store

pytestmark = pytest.mark.engines("sqlite", "postgresql")


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path) -> Store:
    s = open_test_store(tmp_path / "state.db", clock=Clock())
    seed_fleet(s)
    return s


def test_database_is_versioned_and_an_sqlite_file_is_wal(store: Store) -> None:
    if engine() == "sqlite":
        assert store.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.version("store") == len(MIGRATIONS) == 11


def test_reopening_keeps_data_and_does_not_remigrate(tmp_path) -> None:
    s = open_test_store(tmp_path / "a.db")
    seed_fleet(s)
    s.db.close()
    again = open_test_store(tmp_path / "a.db")
    assert again.db.version("store") == 11
    assert [v.serial_number for v in again.vehicles.all()][:2] == ["SN000001", "SN000002"]


def test_newer_schema_is_refused(tmp_path) -> None:
    s = open_test_store(tmp_path / "b.db")
    s.db.conn.execute("UPDATE schema_version SET version=99 WHERE component='store'")
    s.db.close()
    with pytest.raises(StoreError, match="newer than this code"):
        open_test_store(tmp_path / "b.db")


def test_stations_carry_spots_and_docked_vehicles(store: Store) -> None:
    stations = store.topology.cluster_stations(10)
    assert [s.id for s in stations] == [100, 101]
    assert stations[0].badge_reader == 1 and stations[0].max_unlock_distance == 50
    spots = stations[0].spots
    assert spots[0].vehicle.serial_number == "SN000001"
    assert spots[2].vehicle is None
    with pytest.raises(StoreError):
        store.topology.upsert_station(9, 10, "x", 0, 0, max_unlock_distance=5)


def test_trip_start_and_end_move_vehicle_and_rotate_gbfs_id(store: Store) -> None:
    before = store.vehicles.get(1).gbfs_id
    trip = store.trips.start(1, 1, station_id=100)
    riding = store.vehicles.get(1)
    assert riding.trip_id == trip and riding.spot_id is None
    assert riding.gbfs_id != before
    assert store.topology.spot(1000).vehicle_id is None
    with pytest.raises(Conflict):
        store.trips.start(2, 1)
    ended = store.trips.end(trip, cost=250, station_id=101, spot_id=1012)
    assert ended.status == "finished" and ended.cost == 250
    assert store.riders.get(1).credit == 750
    docked = store.vehicles.get(1)
    assert docked.spot_id == 1012 and docked.trip_id is None
    assert docked.gbfs_id not in {before, riding.gbfs_id}
    with pytest.raises(Conflict):
        store.trips.end(trip)


def test_trip_journal_and_outbox_commit_together(store: Store) -> None:
    outbox = Outbox(store.db)
    with pytest.raises(RuntimeError), store.transaction():
        trip = store.trips.start(1, 1, station_id=100)
        store.commands.journal("unlock-1", "spot", 1000, "unlock", trip_id=trip)
        outbox.append(
            "trip.started", {"trip": trip}, idempotency_key="t1", priority=Priority.OUTCOME
        )
        raise RuntimeError("crash before commit")
    assert store.trips.open() == []
    assert store.commands.by_key("unlock-1") is None
    assert outbox.read() == [] and outbox.pending()[Priority.OUTCOME] == 0
    assert store.vehicles.get(1).spot_id == 1000
    with store.transaction():
        trip = store.trips.start(1, 1, station_id=100)
        store.commands.journal("unlock-1", "spot", 1000, "unlock", trip_id=trip)
        outbox.append(
            "trip.started", {"trip": trip}, idempotency_key="t1", priority=Priority.OUTCOME
        )
    assert len(store.trips.open()) == 1 and len(outbox.read()) == 1


def test_command_journal_is_idempotent_and_lists_unfinished(store: Store) -> None:
    entry, created = store.commands.journal("k", "vehicle", 1, "max_speed", {"max_speed": 20})
    again, created_again = store.commands.journal("k", "vehicle", 1, "max_speed")
    assert created and not created_again and again.id == entry.id
    store.commands.mark(entry.id, "sent")
    assert [c.id for c in store.commands.unfinished()] == [entry.id]
    store.commands.mark(entry.id, "acked", {"status": "acked"})
    assert store.commands.unfinished() == []
    with pytest.raises(StoreError):
        store.commands.mark(entry.id, "exploded")
    with pytest.raises(NotFound):
        store.commands.mark(999, "acked")


def test_settle_commands_many_at_once_or_none(store: Store) -> None:
    ids = [store.commands.journal(f"k{i}", "vehicle", 1, "play-sound")[0].id for i in range(3)]
    store.commands.mark_many(ids, "sent")
    with pytest.raises(NotFound):  # one unknown id: nothing written
        store.commands.settle_many([(ids[0], "acked", {"status": "done"}), (999, "acked", None)])
    assert len(store.commands.unfinished()) == 3
    with pytest.raises(StoreError):
        store.commands.settle_many([(ids[0], "exploded", None)])
    store.commands.settle_many(
        [(ids[0], "acked", {"status": "done"}), (ids[1], "timeout", {"status": "no-ack"})]
    )
    assert [c.id for c in store.commands.unfinished()] == [ids[2]]
    assert store.commands.get(ids[1]).state == "timeout"
    assert '"no-ack"' in store.commands.get(ids[1]).outcome


def test_command_runner_settles_a_burst_in_one_transaction(tmp_path) -> None:
    """Commands that end together share one commit; each dispatch returns once it is durable,
    with its own outcome event; a cancelled dispatch still leaves its settle written."""
    import asyncio
    from types import SimpleNamespace

    from dockgate.gateway.flow import CommandRunner
    from dockgate.gateway.protocol import DeviceRef

    db = open_test_database(tmp_path / "s.sqlite3")
    store, outbox = Store(db), Outbox(db)
    begins = []
    enter = db.enter_transaction

    def counting_begins() -> bool:  # the outermost entry is the one that issues BEGIN
        outer = enter()
        if outer:
            begins.append(db.BEGIN)
        return outer

    db.enter_transaction = counting_begins  # type: ignore[method-assign]

    sent: list[object] = []
    burst_sent = asyncio.Event()

    async def send(device, command):
        # the burst's sends all end together, once the last is out: however long each mark
        # as sent took to commit (a round trip to a server, on PostgreSQL)
        sent.append(command)
        if len(sent) == 20:
            burst_sent.set()
        await (burst_sent.wait() if len(sent) <= 20 else asyncio.sleep(0.01))
        return SimpleNamespace(status="accepted", reason=None, attempts=1)

    async def main() -> None:
        runner = CommandRunner(store, outbox, send)
        entries = [
            runner.journal(
                f"k{i}",
                DeviceRef.vehicle(1, f"SXB{i:03d}"),
                i,
                {"cmd": "play-sound", "sound": "geofencing"},
            )
            for i in range(20)
        ]
        begins.clear()
        settled = await asyncio.gather(*(runner.dispatch(e) for e in entries))
        assert {s.state for s in settled} == {"acked"}
        assert store.commands.unfinished() == []
        # 20 marks as sent (one each, not marked by the caller) and ONE settle commit
        assert len(begins) == 21
        late = runner.journal(
            "late", DeviceRef.vehicle(1, "SXB999"), 99, {"cmd": "play-sound", "sound": "geofencing"}
        )
        task = asyncio.create_task(runner.dispatch(late))
        await asyncio.sleep(0.011)  # the send is over, the group commit not yet done
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert store.commands.get(late.id).state == "acked"

    asyncio.run(main())
    kinds = [e.kind for e in outbox.read(0, 100)]
    assert kinds.count("command.outcome") == 21
    db.close()


def test_records_never_expose_keys_and_resolve_to_riders(store: Store) -> None:
    product = store.products.create("Ada's card")
    record = store.records.create(
        product, token_encryption="aes-128", key="00" * 16, uid="04a1b2c3d4e5f6"
    )
    row = store.records.get(record)
    assert not hasattr(row, "key_secret") and "00" * 16 not in repr(row)
    assert store.records.key(record) == "00" * 16
    assert store.riders.of_record(record) is None
    store.products.pair(product, 1)
    assert store.riders.of_record(record).id == 1
    assert store.records.by_uid("04A1B2C3D4E5F6").id == record
    assert store.records.count_scan(record) == 1 and store.records.count_scan(record) == 2
    with pytest.raises(StoreError):
        store.records.create(product, token_encryption="rot13")


def test_block_and_credit(store: Store) -> None:
    store.riders.set_blocked(2, True, "unpaid trips")
    assert store.riders.get(2).blocked == 1 and store.riders.get(2).block_reason == "unpaid trips"
    store.riders.set_blocked(2, False)
    assert store.riders.get(2).blocked == 0 and store.riders.get(2).block_reason is None
    assert store.riders.add_credit(2, 300) == 300
    with pytest.raises(NotFound):
        store.riders.set_blocked(77, True, "who")


def test_alerts_dedup_filter_and_resolve(store: Store) -> None:
    a, created = store.alerts.raise_alert(
        NewAlert(1, "vehicle-fallen", "high", vehicle_id=1, dedup_key="v1:fall")
    )
    b, created_b = store.alerts.raise_alert(
        NewAlert(1, "vehicle-fallen", "high", vehicle_id=1, dedup_key="v1:fall")
    )
    c, _ = store.alerts.raise_alert(
        NewAlert(1, "station-power-cut", "critical", station_id=100, cluster_id=10)
    )
    assert created and not created_b and a == b
    assert {x.id for x in store.alerts.query(AlertQuery([1], resolved=False))} == {a, c}
    assert store.alerts.resolve([a, 999]) == [a]
    history = store.alerts.query(AlertQuery([1], resolved=True, alert_type="vehicle-fallen"))
    assert [x.id for x in history] == [a]
    assert store.alerts.query(AlertQuery([1], resolved=True, alert_severity="critical")) == []
    assert store.alerts.query(AlertQuery([2], resolved=False)) == []
    with pytest.raises(StoreError):
        store.alerts.raise_alert(NewAlert(1, "vehicle-on-fire", "high"))


def test_outages_and_energy(store: Store) -> None:
    first = store.outages.start(100, "power")
    assert store.outages.start(100) == first and store.topology.station(100).is_online == 0
    store.outages.end(100)
    outage = store.outages.of_cluster(10)[0]
    assert outage.ended_at is not None and store.topology.station(100).is_online == 1
    for i in range(10):
        store.energy.add(100, 1000.0 + i * 60, 5.0)
    used = store.energy.consumption(100, 1000.0, 1300.0)
    assert used.readings == 5 and used.energy_wh == 25.0


def test_bundles_must_increase(store: Store) -> None:
    store.bundles.save(3, "dashboard", {"a": 1})
    with pytest.raises(Conflict):
        store.bundles.save(3, "dashboard", {"a": 2})
    assert store.bundles.current().body == {"a": 1}


@pytest.mark.engines("sqlite")
def test_database_rejects_bad_synchronous_mode(tmp_path) -> None:
    with pytest.raises(StoreError):
        Database(tmp_path / "c.db", synchronous="sometimes")
    db = Database(tmp_path / "d.db")
    with pytest.raises(sqlite3.OperationalError), db.transaction() as conn:
        conn.execute("SELECT * FROM nowhere")
    with db.transaction():  # the failed transaction left nothing open
        pass


def test_vehicle_leaving_without_rental_frees_its_spot(store: Store) -> None:
    # a report naming another vehicle changes nothing
    assert store.vehicles.undock_spot(1000, "SN000002") is None
    assert store.topology.spot(1000).vehicle_id == 1
    assert store.vehicles.undock_spot(1000, "SN000001") == 1
    assert (
        store.topology.spot(1000).state == "free" and store.topology.spot(1000).vehicle_id is None
    )
    assert store.vehicles.get(1).spot_id is None and store.vehicles.get(1).trip_id is None
    assert store.vehicles.undock_spot(1000) is None  # already free
    assert store.vehicles.undock_spot(1001) == 2  # without a serial: whatever was there left
    assert [s.vehicle_id for s in store.topology.spots(100)] == [None, None, None]
    with pytest.raises(NotFound):
        store.vehicles.undock_spot(99_999)


def test_a_failed_statement_rolls_its_transaction_back(tmp_path) -> None:
    db = open_test_database(tmp_path / "e.db")
    Store(db)
    with pytest.raises(Exception, match="nowhere"), db.transaction() as conn:
        conn.execute(
            "INSERT INTO riders(id, credit, first_purchase_done, updated_at) VALUES (1, 0, 0, 0)"
        )
        conn.execute("SELECT * FROM nowhere")
    assert db.depth == 0 and not db.conn.in_transaction
    with db.transaction() as conn:  # the failed transaction left nothing open, kept nothing
        assert conn.execute("SELECT count(*) FROM riders").fetchone()[0] == 0


def test_vehicle_by_serial_uses_an_index(store: Store) -> None:
    assert store.vehicles.by_serial("SN000003").id == 3
    assert store.vehicles.by_serial("nope") is None
    if engine() == "sqlite":
        explain, indexed = "EXPLAIN QUERY PLAN", "USING INDEX"
    else:  # a table this small is scanned unless scans are ruled out
        store.db.conn.execute("SET enable_seqscan = off")
        explain, indexed = "EXPLAIN", "Index Scan"
    plan = store.db.conn.execute(
        f"{explain} SELECT * FROM vehicles WHERE serial_number = ?", ("x",)
    ).fetchall()
    assert any(indexed in str(tuple(r)) for r in plan), [tuple(r) for r in plan]


def test_hold_start_is_recorded_and_every_hold_counted(store: Store) -> None:
    clock: Clock = store.clock  # type: ignore[assignment]
    trip_id = store.trips.start(1, 1)
    clock.now += 300
    store.trips.set_status(trip_id, "on-hold")
    held_at = clock.now
    assert store.trips.get(trip_id).paused_at == held_at
    clock.now += 60
    store.trips.set_status(trip_id, "on-hold")  # held again: the first start is kept
    assert store.trips.get(trip_id).paused_at == held_at
    clock.now += 60
    assert store.trips.get(trip_id).hold_seconds(clock.now) == 120
    store.trips.set_status(trip_id, "running")
    trip = store.trips.get(trip_id)
    assert trip.paused_at is None and trip.held_seconds == 120
    clock.now += 100
    store.trips.set_status(trip_id, "on-hold")
    clock.now += 30
    assert store.trips.get(trip_id).hold_seconds(clock.now) == 150


def test_idempotency_keys_expire_and_are_bounded(tmp_path) -> None:
    clock = Clock()
    s = open_test_store(
        tmp_path / "idem.db", clock=clock, idempotency_ttl=60.0, idempotency_max=100
    )
    s.idempotency.remember("POST /x", "k1", "f1", '{"a":1}')
    assert s.idempotency.response("POST /x", "k1").response == '{"a":1}'
    s.idempotency.remember("POST /x", "k1", "f2", '{"a":2}')  # still fresh: the first answer stays
    assert s.idempotency.response("POST /x", "k1").fingerprint == "f1"
    clock.now += 61
    assert s.idempotency.response("POST /x", "k1") is None  # expired: the key is free again
    s.idempotency.remember("POST /x", "k1", "f3", '{"a":3}')
    assert s.idempotency.response("POST /x", "k1").fingerprint == "f3"
    for i in range(1000):  # pruned as it goes: never far above the bound
        clock.now += 0.001
        s.idempotency.remember("POST /x", f"n{i}", "f", "{}")
    count = s.db.conn.execute("SELECT count(*) FROM idempotency").fetchone()[0]
    assert count <= 100 + 64, count
    s.idempotency.prune()
    assert s.db.conn.execute("SELECT count(*) FROM idempotency").fetchone()[0] == 100
    assert s.idempotency.response("POST /x", "n999") is not None  # the newest are kept
    assert s.idempotency.response("POST /x", "n0") is None


def test_trips_and_riders_by_id_read_many_at_once(store: Store) -> None:
    t1 = store.trips.start(1, 3)
    t2 = store.trips.start(2, 4)
    trips = store.trips.by_ids([t2, t1, 99_999, t1])
    assert set(trips) == {t1, t2}
    assert trips[t1] == store.trips.get(t1) and trips[t2].rider_id == 2
    riders = store.riders.by_ids(range(1, 1200))  # more than one query's worth of ids
    assert set(riders) == {1, 2}
    assert riders[1] == store.riders.get(1)
    assert store.trips.by_ids([]) == {}


def test_nested_transactions_commit_once_and_roll_back_together(store: Store) -> None:
    hooks: list[str] = []
    with store.transaction():
        with store.transaction():
            store.riders.upsert(3, credit=1)
            store.db.after_commit(lambda: hooks.append("done"))
        assert hooks == []  # not before the outer commit
    assert hooks == ["done"] and store.riders.get(3).credit == 1
    with pytest.raises(RuntimeError), store.transaction():
        store.riders.upsert(4, credit=1)
        with store.transaction():
            store.riders.upsert(5, credit=1)
            store.db.after_commit(lambda: hooks.append("never"))
        raise RuntimeError("undo")
    assert hooks == ["done"] and store.riders.by_ids([4, 5]) == {}
    assert store.db.depth == 0
    store.riders.upsert(6)  # the lock and the connection are usable again
    assert store.riders.get(6).credit == 0


OLD_OUTBOX = """
    CREATE TABLE outbox_events (
        cursor INTEGER PRIMARY KEY AUTOINCREMENT, priority INTEGER NOT NULL,
        kind TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, compact_key TEXT,
        created_at REAL NOT NULL, payload BLOB NOT NULL
    );
    CREATE INDEX outbox_by_priority ON outbox_events(priority, cursor);
    CREATE INDEX outbox_by_compact_key ON outbox_events(compact_key)
        WHERE compact_key IS NOT NULL;
    CREATE TABLE outbox_stats (
        priority INTEGER PRIMARY KEY, pending INTEGER NOT NULL DEFAULT 0,
        appended INTEGER NOT NULL DEFAULT 0, dropped INTEGER NOT NULL DEFAULT 0,
        compacted INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO outbox_stats(priority) VALUES (0), (1), (2), (3);
    CREATE TABLE outbox_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO outbox_meta(name, value) VALUES ('acked_cursor', 0)
"""
OLD_FLOW = """
    CREATE TABLE flow_rentals (
        key TEXT PRIMARY KEY, command_id INTEGER NOT NULL, rider_id INTEGER NOT NULL,
        record_id INTEGER, vehicle_id INTEGER NOT NULL, serial TEXT NOT NULL,
        station_id INTEGER NOT NULL, spot_id INTEGER NOT NULL, spot INTEGER NOT NULL,
        reader TEXT, created_at REAL NOT NULL, state TEXT NOT NULL
    )
"""


@pytest.mark.engines("sqlite")  # those histories were only ever in SQLite files
def test_a_database_of_the_separate_histories_reaches_the_one_history(tmp_path: Path) -> None:
    """Store, outbox and flow had a history each; their data is kept, one history remains."""
    path = tmp_path / "old.db"
    db = Database(path)
    db.migrate("store", MIGRATIONS[:3])
    db.migrate("outbox", [OLD_OUTBOX])
    db.migrate("flow", [OLD_FLOW])
    with db.transaction() as c:
        c.execute(
            "INSERT INTO outbox_events(priority, kind, idempotency_key, created_at, payload)"
            " VALUES (1, 'trip.started', 'trip:1:started', 1.0, '{\"trip_id\":1}')"
        )
        c.execute("UPDATE outbox_stats SET pending=1, appended=1 WHERE priority=1")
        c.execute(
            "INSERT INTO flow_rentals VALUES ('tap:1', 1, 7, NULL, 1, 'SXB001', 1, 11, 1,"
            " 'reader-a', 1.0, 'open')"
        )
    db.close()

    store = Store.open(path)
    outbox = Outbox(store.db)
    versions = store.db.conn.execute("SELECT component, version FROM schema_version").fetchall()
    assert [tuple(v) for v in versions] == [("store", 11)]
    [kept] = outbox.read()
    assert (kept.cursor, kept.kind, kept.payload) == (1, "trip.started", {"trip_id": 1})
    assert outbox.pending()[Priority.OUTCOME] == 1
    assert outbox.append("e", {}, idempotency_key="next", priority=Priority.OUTCOME) == 2
    assert outbox.ack(2) == 2 and outbox.pending()[Priority.OUTCOME] == 0
    [rental] = store.rentals.all()
    assert (rental.key, rental.serial, rental.state) == ("tap:1", "SXB001", "open")
    assert store.replay.accept(bytes(7), 1) and store.replay.last(bytes(7)) == 1


def test_rows_serialise_as_the_tables_columns(store: Store) -> None:
    """A row is the JSON object the API served when rows were dicts: every column, in the
    table's order, with the values SQLite holds (flags as 0/1)."""
    trip = store.trips.start(1, 1, station_id=100)
    for table, row in (
        ("trips", store.trips.get(trip)),
        ("vehicles", store.vehicles.get(1)),
        ("riders", store.riders.get(1)),
        ("stations", store.topology.station(100)),
        ("spots", store.topology.spot(1000)),
    ):
        raw = store.db.conn.execute(f"SELECT * FROM {table} WHERE id=?", (row.id,)).fetchone()
        assert orjson.dumps(row) == orjson.dumps(dict(raw)), table
        assert dataclasses.asdict(row) == dict(raw), table
    entry, _ = store.commands.journal("k", "vehicle", 1, "lock", {"a": 1})
    raw = store.db.conn.execute("SELECT * FROM command_journal WHERE id=?", (entry.id,)).fetchone()
    assert (
        dataclasses.asdict(entry) == dict(raw) == dataclasses.asdict(store.commands.get(entry.id))
    )
