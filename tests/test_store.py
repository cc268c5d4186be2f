"""The SQLite state store: migrations, fleet state, trips, the command journal, alerts."""

from __future__ import annotations

import sqlite3

import pytest

from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.store import Conflict, Database, NotFound, Store, StoreError


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def seed_fleet(store: Store) -> None:
    """One network, one cluster, two stations with three spots each, four vehicles, riders."""
    store.upsert_network(1, "Strasbourg")
    store.upsert_cluster(10, 1, "Gare", 48.5846, 7.7355)
    for station in (100, 101):
        store.upsert_station(
            station,
            10,
            f"Station {station}",
            48.58 + station / 1e4,
            7.73,
            badge_reader=station == 100,
            max_unlock_distance=50,
        )
        for n in range(3):
            store.upsert_spot(station * 10 + n, station, n + 1)
    for v in range(1, 5):
        store.upsert_vehicle(v, 1, f"SN{v:06d}", battery=20 * v, lat=48.58, lon=7.73)
    store.dock_vehicle(1, 1000)
    store.dock_vehicle(2, 1001)
    store.upsert_rider(1, email="ada@example.org", credit=1000, first_purchase_done=True)
    store.upsert_rider(2, email="bob@example.org")


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store.open(tmp_path / "state.db", clock=Clock())
    seed_fleet(s)
    return s


def test_database_is_wal_and_versioned(store: Store) -> None:
    assert store.db.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store.db.version("store") == 3


def test_reopening_keeps_data_and_does_not_remigrate(tmp_path) -> None:
    s = Store.open(tmp_path / "a.db")
    seed_fleet(s)
    s.db.close()
    again = Store.open(tmp_path / "a.db")
    assert again.db.version("store") == 3
    assert [v["serial_number"] for v in again.vehicles()][:2] == ["SN000001", "SN000002"]


def test_newer_schema_is_refused(tmp_path) -> None:
    s = Store.open(tmp_path / "b.db")
    s.db.conn.execute("UPDATE schema_version SET version=99 WHERE component='store'")
    s.db.close()
    with pytest.raises(StoreError, match="newer than this code"):
        Store.open(tmp_path / "b.db")


def test_stations_carry_spots_and_docked_vehicles(store: Store) -> None:
    stations = store.stations(10)
    assert [s["id"] for s in stations] == [100, 101]
    assert stations[0]["badge_reader"] == 1 and stations[0]["max_unlock_distance"] == 50
    spots = stations[0]["spots"]
    assert spots[0]["vehicle"]["serial_number"] == "SN000001"
    assert spots[2]["vehicle"] is None
    with pytest.raises(StoreError):
        store.upsert_station(9, 10, "x", 0, 0, max_unlock_distance=5)


def test_trip_start_and_end_move_vehicle_and_rotate_gbfs_id(store: Store) -> None:
    before = store.vehicle(1)["gbfs_id"]
    trip = store.start_trip(1, 1, station_id=100)
    riding = store.vehicle(1)
    assert riding["trip_id"] == trip and riding["spot_id"] is None
    assert riding["gbfs_id"] != before
    assert store.spot(1000)["vehicle_id"] is None
    with pytest.raises(Conflict):
        store.start_trip(2, 1)
    ended = store.end_trip(trip, cost=250, station_id=101, spot_id=1012)
    assert ended["status"] == "ended" and ended["cost"] == 250
    assert store.rider(1)["credit"] == 750
    docked = store.vehicle(1)
    assert docked["spot_id"] == 1012 and docked["trip_id"] is None
    assert docked["gbfs_id"] not in {before, riding["gbfs_id"]}
    with pytest.raises(Conflict):
        store.end_trip(trip)


def test_trip_journal_and_outbox_commit_together(store: Store) -> None:
    outbox = Outbox(store.db)
    with pytest.raises(RuntimeError), store.transaction():
        trip = store.start_trip(1, 1, station_id=100)
        store.journal_command("unlock-1", "spot", 1000, "unlock", trip_id=trip)
        outbox.append(
            "trip.started", {"trip": trip}, idempotency_key="t1", priority=Priority.OUTCOME
        )
        raise RuntimeError("crash before commit")
    assert store.open_trips() == []
    assert store.command_by_key("unlock-1") is None
    assert outbox.read() == [] and outbox.pending()[Priority.OUTCOME] == 0
    assert store.vehicle(1)["spot_id"] == 1000
    with store.transaction():
        trip = store.start_trip(1, 1, station_id=100)
        store.journal_command("unlock-1", "spot", 1000, "unlock", trip_id=trip)
        outbox.append(
            "trip.started", {"trip": trip}, idempotency_key="t1", priority=Priority.OUTCOME
        )
    assert len(store.open_trips()) == 1 and len(outbox.read()) == 1


def test_command_journal_is_idempotent_and_lists_unfinished(store: Store) -> None:
    entry, created = store.journal_command("k", "vehicle", 1, "max_speed", {"max_speed": 20})
    again, created_again = store.journal_command("k", "vehicle", 1, "max_speed")
    assert created and not created_again and again["id"] == entry["id"]
    store.mark_command(entry["id"], "sent")
    assert [c["id"] for c in store.unfinished_commands()] == [entry["id"]]
    store.mark_command(entry["id"], "acked", {"status": "acked"})
    assert store.unfinished_commands() == []
    with pytest.raises(StoreError):
        store.mark_command(entry["id"], "exploded")
    with pytest.raises(NotFound):
        store.mark_command(999, "acked")


def test_settle_commands_many_at_once_or_none(store: Store) -> None:
    ids = [store.journal_command(f"k{i}", "vehicle", 1, "play-sound")[0]["id"] for i in range(3)]
    store.mark_commands(ids, "sent")
    with pytest.raises(NotFound):  # one unknown id: nothing written
        store.settle_commands([(ids[0], "acked", {"status": "done"}), (999, "acked", None)])
    assert len(store.unfinished_commands()) == 3
    with pytest.raises(StoreError):
        store.settle_commands([(ids[0], "exploded", None)])
    store.settle_commands(
        [(ids[0], "acked", {"status": "done"}), (ids[1], "timeout", {"status": "no-ack"})]
    )
    assert [c["id"] for c in store.unfinished_commands()] == [ids[2]]
    assert store.command(ids[1])["state"] == "timeout"
    assert '"no-ack"' in store.command(ids[1])["outcome"]


def test_command_runner_settles_a_burst_in_one_transaction(tmp_path) -> None:
    """Commands that end together share one commit; each dispatch returns once it is durable,
    with its own outcome event; a cancelled dispatch still leaves its settle written."""
    import asyncio
    from types import SimpleNamespace

    from dockgate.gateway.flow import CommandRunner
    from dockgate.gateway.protocol import DeviceRef

    db = Database(tmp_path / "s.sqlite3")
    store, outbox = Store(db), Outbox(db)
    begins = []
    db.conn.set_trace_callback(lambda sql: begins.append(sql) if sql.startswith("BEGIN") else 0)

    async def send(device, command):
        await asyncio.sleep(0.01)
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
        assert store.unfinished_commands() == []
        # 20 marks as sent (one each, not marked by the caller) and ONE settle commit
        assert len(begins) == 21
        late = runner.journal(
            "late", DeviceRef.vehicle(1, "SXB999"), 99, {"cmd": "play-sound", "sound": "geofencing"}
        )
        task = asyncio.create_task(runner.dispatch(late))
        await asyncio.sleep(0.011)  # the send is over, the group commit not yet done
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert store.command(late["id"])["state"] == "acked"

    asyncio.run(main())
    kinds = [e.kind for e in outbox.read(0, 100)]
    assert kinds.count("command.outcome") == 21
    db.close()


def test_records_never_expose_keys_and_resolve_to_riders(store: Store) -> None:
    product = store.create_product("Ada's card")
    record = store.create_record(
        product, token_encryption="aes-128", key="00" * 16, uid="04a1b2c3d4e5f6"
    )
    assert "key_secret" not in store.record(record)
    assert store.record_key(record) == "00" * 16
    assert store.rider_for_record(record) is None
    store.pair_product(product, 1)
    assert store.rider_for_record(record)["id"] == 1
    assert store.record_by_uid("04A1B2C3D4E5F6")["id"] == record
    assert store.count_scan(record) == 1 and store.count_scan(record) == 2
    with pytest.raises(StoreError):
        store.create_record(product, token_encryption="rot13")


def test_block_and_credit(store: Store) -> None:
    store.set_blocked(2, True, "unpaid trips")
    assert store.rider(2)["blocked"] == 1 and store.rider(2)["block_reason"] == "unpaid trips"
    store.set_blocked(2, False)
    assert store.rider(2)["blocked"] == 0 and store.rider(2)["block_reason"] is None
    assert store.add_credit(2, 300) == 300
    with pytest.raises(NotFound):
        store.set_blocked(77, True, "who")


def test_alerts_dedup_filter_and_resolve(store: Store) -> None:
    a, created = store.raise_alert(1, "vehicle-fallen", "high", vehicle_id=1, dedup_key="v1:fall")
    b, created_b = store.raise_alert(1, "vehicle-fallen", "high", vehicle_id=1, dedup_key="v1:fall")
    c, _ = store.raise_alert(1, "station-power-cut", "critical", station_id=100, cluster_id=10)
    assert created and not created_b and a == b
    assert {x["id"] for x in store.alerts([1], resolved=False)} == {a, c}
    assert store.resolve_alerts([a, 999]) == [a]
    history = store.alerts([1], resolved=True, alert_type="vehicle-fallen")
    assert [x["id"] for x in history] == [a]
    assert store.alerts([1], resolved=True, alert_severity="critical") == []
    assert store.alerts([2], resolved=False) == []
    with pytest.raises(StoreError):
        store.raise_alert(1, "vehicle-on-fire", "high")


def test_outages_and_energy(store: Store) -> None:
    first = store.start_outage(100, "power")
    assert store.start_outage(100) == first and store.station(100)["is_online"] == 0
    store.end_outage(100)
    outage = store.outages(10)[0]
    assert outage["ended_at"] is not None and store.station(100)["is_online"] == 1
    for i in range(10):
        store.add_energy(100, 1000.0 + i * 60, 5.0)
    used = store.energy_consumption(100, 1000.0, 1300.0)
    assert used["readings"] == 5 and used["energy_wh"] == 25.0


def test_bundles_must_increase(store: Store) -> None:
    store.save_bundle(3, "dashboard", {"a": 1})
    with pytest.raises(Conflict):
        store.save_bundle(3, "dashboard", {"a": 2})
    assert store.current_bundle()["body"] == {"a": 1}


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
    assert store.undock_spot(1000, "SN000002") is None
    assert store.spot(1000)["vehicle_id"] == 1
    assert store.undock_spot(1000, "SN000001") == 1
    assert store.spot(1000)["state"] == "free" and store.spot(1000)["vehicle_id"] is None
    assert store.vehicle(1)["spot_id"] is None and store.vehicle(1)["trip_id"] is None
    assert store.undock_spot(1000) is None  # already free
    assert store.undock_spot(1001) == 2  # without a serial: whatever was there left
    assert [s["vehicle_id"] for s in store.spots(100)] == [None, None, None]
    with pytest.raises(NotFound):
        store.undock_spot(99_999)


def test_vehicle_by_serial_uses_an_index(store: Store) -> None:
    assert store.vehicle_by_serial("SN000003")["id"] == 3
    assert store.vehicle_by_serial("nope") is None
    plan = store.db.conn.execute(
        "EXPLAIN QUERY PLAN SELECT * FROM vehicles WHERE serial_number = ?", ("x",)
    ).fetchall()
    assert any("USING INDEX" in str(tuple(r)) for r in plan), [tuple(r) for r in plan]


def test_hold_start_is_recorded_and_every_hold_counted(store: Store) -> None:
    clock: Clock = store.clock  # type: ignore[assignment]
    trip_id = store.start_trip(1, 1)
    clock.now += 300
    store.set_trip_status(trip_id, "on_hold")
    held_at = clock.now
    assert store.trip(trip_id)["paused_at"] == held_at
    clock.now += 60
    store.set_trip_status(trip_id, "on_hold")  # held again: the first start is kept
    assert store.trip(trip_id)["paused_at"] == held_at
    clock.now += 60
    assert store.hold_seconds(store.trip(trip_id), clock.now) == 120
    store.set_trip_status(trip_id, "started")
    trip = store.trip(trip_id)
    assert trip["paused_at"] is None and trip["held_seconds"] == 120
    clock.now += 100
    store.set_trip_status(trip_id, "paused")
    clock.now += 30
    assert store.hold_seconds(store.trip(trip_id), clock.now) == 150


def test_idempotency_keys_expire_and_are_bounded(tmp_path) -> None:
    clock = Clock()
    s = Store.open(tmp_path / "idem.db", clock=clock, idempotency_ttl=60.0, idempotency_max=100)
    s.remember_response("POST /x", "k1", "f1", '{"a":1}')
    assert s.idempotent_response("POST /x", "k1")["response"] == '{"a":1}'
    s.remember_response("POST /x", "k1", "f2", '{"a":2}')  # still fresh: the first answer stays
    assert s.idempotent_response("POST /x", "k1")["fingerprint"] == "f1"
    clock.now += 61
    assert s.idempotent_response("POST /x", "k1") is None  # expired: the key is free again
    s.remember_response("POST /x", "k1", "f3", '{"a":3}')
    assert s.idempotent_response("POST /x", "k1")["fingerprint"] == "f3"
    for i in range(1000):  # pruned as it goes: never far above the bound
        clock.now += 0.001
        s.remember_response("POST /x", f"n{i}", "f", "{}")
    count = s.db.conn.execute("SELECT count(*) FROM idempotency").fetchone()[0]
    assert count <= 100 + 64, count
    s.prune_idempotency()
    assert s.db.conn.execute("SELECT count(*) FROM idempotency").fetchone()[0] == 100
    assert s.idempotent_response("POST /x", "n999") is not None  # the newest are kept
    assert s.idempotent_response("POST /x", "n0") is None


def test_trips_and_riders_by_id_read_many_at_once(store: Store) -> None:
    t1 = store.start_trip(1, 3)
    t2 = store.start_trip(2, 4)
    trips = store.trips_by_id([t2, t1, 99_999, t1])
    assert set(trips) == {t1, t2}
    assert trips[t1] == store.trip(t1) and trips[t2]["rider_id"] == 2
    riders = store.riders_by_id(range(1, 1200))  # more than one query's worth of ids
    assert set(riders) == {1, 2}
    assert riders[1] == store.rider(1)
    assert store.trips_by_id([]) == {}


def test_nested_transactions_commit_once_and_roll_back_together(store: Store) -> None:
    hooks: list[str] = []
    with store.transaction():
        with store.transaction():
            store.upsert_rider(3, credit=1)
            store.db.after_commit(lambda: hooks.append("done"))
        assert hooks == []  # not before the outer commit
    assert hooks == ["done"] and store.rider(3)["credit"] == 1
    with pytest.raises(RuntimeError), store.transaction():
        store.upsert_rider(4, credit=1)
        with store.transaction():
            store.upsert_rider(5, credit=1)
            store.db.after_commit(lambda: hooks.append("never"))
        raise RuntimeError("undo")
    assert hooks == ["done"] and store.riders_by_id([4, 5]) == {}
    assert store.db._depth == 0
    store.upsert_rider(6)  # the lock and the connection are usable again
    assert store.rider(6)["credit"] == 0
