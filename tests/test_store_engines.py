"""The store's two engines: one scenario gives the same results on SQLite and PostgreSQL; how
``[store] url`` picks the engine, and that no URL password is ever shown."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import pytest

from dockgate.gateway.daemon.settings import ConfigError, load_settings
from dockgate.gateway.outbox import Outbox, Priority
from dockgate.gateway.sealing import Kek, Keyring
from dockgate.gateway.store import (
    AlertQuery,
    BaseDatabase,
    Database,
    NewAlert,
    Store,
    StoreError,
    StoreHealth,
    TripQuery,
    open_database,
    redact_url,
    refused_write,
)
from dockgate.gateway.store._postgres import PostgresError, pyformat
from dockgate.sim.services.postgres import PostgresServer
from tests.support.fleet import seed_fleet

KEK = Kek(bytes(range(32)), "test KEK")
OUTCOME = Priority.OUTCOME
#: Columns whose values are random by design (a fresh GBFS id per trip).
RANDOM_COLUMNS = {"gbfs_id"}
TABLES = (
    "vehicles",
    "spots",
    "riders",
    "trips",
    "command_journal",
    "fleet_alerts",
    "outbox_events",
    "outbox_stats",
    "outbox_meta",
    "idempotency",
    "sun_counters",
    "inbox",
    "flow_rentals",
)


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        self.now += 0.25
        return self.now


def scenario(db: BaseDatabase) -> dict[str, Any]:
    """A day in small: trips started and ended with their journal entries and events in one
    transaction each, another rolled back, the backend pulling the outbox by cursor and
    acknowledging, API idempotency keys, SUN replay counters, redelivered device messages,
    alerts, and the dashboard's searches. Everything it saw, as plain values."""
    clock = Clock()
    store = Store(db, clock=clock, keyring=Keyring.of(KEK))
    outbox = Outbox(db, clock=clock, limits={Priority.STATE: 5})
    seed_fleet(store)
    seen: dict[str, Any] = {}
    trips = []
    for rider, vehicle in ((1, 1), (2, 2)):
        with store.transaction():
            trip = store.trips.start(rider, vehicle, station_id=100)
            store.commands.journal(f"unlock-{trip}", "spot", 1000 + vehicle - 1, "unlock")
            started = {"trip": trip}
            outbox.append("trip.started", started, idempotency_key=f"t{trip}", priority=OUTCOME)
        trips.append(trip)
    with pytest.raises(RuntimeError), store.transaction():  # a crash before the commit
        store.riders.upsert(1, credit=0)
        store.vehicles.update(3, battery=1)
        store.idempotency.remember("POST /lost", "k", "f", "{}")
        raise RuntimeError("crash")
    for n in range(12):  # vehicle states: compacted per vehicle, bounded to five
        outbox.append("vehicle.state", {"n": n}, idempotency_key=f"s{n}", compact_key=f"v{n % 3}")
    store.trips.set_status(trips[0], "on-hold")
    store.trips.set_status(trips[0], "running")
    for trip in trips:
        with store.transaction():
            ended = store.trips.end(trip, cost=150, station_id=101, spot_id=1010 + trip)
            outbox.append(
                "trip.ended", {"trip": trip, "cost": ended.cost}, idempotency_key=f"e{trip}"
            )
    seen["repeated_key"] = outbox.append("x", {}, idempotency_key="t1")
    pages, cursor = [], 0
    while page := outbox.read(cursor, 4):
        pages.append([(e.cursor, e.kind, e.payload) for e in page])
        cursor = page[-1].cursor
    seen["pages"] = pages
    seen["acked"] = outbox.ack(pages[0][-1][0])
    seen["after_ack"] = [(e.cursor, e.kind) for e in outbox.read(0, 100)]
    seen["stats"] = {p.name: dataclasses.astuple(s) for p, s in outbox.stats().items()}
    seen["last_cursor"] = outbox.last_cursor
    store.idempotency.remember("POST /x", "k", "f1", '{"a": 1}')
    store.idempotency.remember("POST /x", "k", "f2", '{"a": 2}')
    seen["idempotent"] = store.idempotency.response("POST /x", "k")
    seen["replay"] = [store.replay.accept(b"\x04" * 7, c) for c in (3, 3, 2, 4)]
    seen["inbox"] = [store.inbox.admit(i) for i in (b"m1", b"m2", b"m1")]
    alert = NewAlert(1, "vehicle-fallen", "critical", vehicle_id=1, dedup_key="fallen:1")
    seen["alerts"] = [store.alerts.raise_alert(alert), store.alerts.raise_alert(alert)]
    seen["resolved"] = store.alerts.resolve([1, 99])
    seen["search"] = store.trips.search(TripQuery(email="ADA@", sort_by="end_date"))
    seen["by_duration"] = store.trips.search(TripQuery(sort_by="duration"))
    seen["past_alerts"] = store.alerts.search(AlertQuery(resolved=True, email="ada"))
    seen["energy"] = store.energy.consumption(100, 0, 2e9)
    for table in TABLES:
        rows = db.conn.execute(f"SELECT * FROM {table}").fetchall()
        plain = [dict(r) for r in rows]
        for row in plain:
            for column in RANDOM_COLUMNS & row.keys():
                row[column] = "random"
        seen[f"table {table}"] = sorted(plain, key=repr)
    store.close()
    return seen


def test_the_same_scenario_gives_the_same_results_on_both_engines(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    on_sqlite = scenario(Database(tmp_path / "a.sqlite3"))
    name = postgres_server.create_database("same")
    try:
        on_postgres = scenario(open_database(postgres_server.url(name)))
    finally:
        postgres_server.drop_database(name)
    assert on_sqlite["pages"] and on_sqlite["acked"] == 4  # the scenario did something
    assert on_sqlite["replay"] == [True, False, False, True]
    assert on_sqlite["inbox"] == [True, True, False]
    for key in on_sqlite:
        assert on_postgres[key] == on_sqlite[key], key


def test_a_dropped_connection_is_opened_again_outside_a_transaction(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """The server drops the connection (a restart, a cut): the statement that finds out fails;
    a transaction that was open fails whole (nothing of it runs on a new connection); the
    next statement outside one connects again."""
    name = postgres_server.create_database("drop")
    try:
        store = Store(open_database(postgres_server.url(name)), keyring=Keyring.of(KEK))
        store.riders.upsert(1, credit=5)

        def drop() -> None:
            postgres_server.terminate_sessions(name)

        drop()
        with pytest.raises(StoreError):
            store.riders.get(1)  # the first statement finds the connection gone
        assert store.riders.get(1).credit == 5  # ... the next one connects again
        with pytest.raises(StoreError), store.transaction():
            store.riders.upsert(2)
            drop()
            store.riders.upsert(3)
        assert store.riders.by_ids([2, 3]) == {} and store.db.depth == 0
        with store.transaction():
            store.riders.upsert(4)
        assert store.riders.get(4).credit == 0
        store.close()
        with pytest.raises(StoreError, match="closed"):
            store.riders.get(4)
    finally:
        postgres_server.drop_database(name)


# -- choosing the engine, never showing a password --------------------------------------------
def test_redact_url_takes_out_every_password() -> None:
    assert redact_url("postgresql://gw:s3cret@db.site:5432/dockgate") == (
        "postgresql://gw:***@db.site:5432/dockgate"
    )
    assert redact_url("postgresql://gw@db/dockgate?sslmode=require&password=s3cret") == (
        "postgresql://gw@db/dockgate?sslmode=require&password=***"
    )
    assert redact_url("postgresql:///dockgate?host=/run/postgresql") == (
        "postgresql:///dockgate?host=/run/postgresql"
    )
    assert "s3cret" not in redact_url("postgresql://gw:s3cret@[::1/x")
    assert redact_url("postgresql:///dockgate?password=s3cret") == (
        "postgresql:///dockgate?password=***"
    )


def test_the_store_url_selects_the_engine_and_hides_its_password(tmp_path: Path) -> None:
    config = tmp_path / "dockgate.toml"
    config.write_text('[store]\nurl = "postgresql://gw:s3cret@db.site/dockgate"\n')
    settings = load_settings(config)
    assert settings.store.url == "postgresql://gw:s3cret@db.site/dockgate"
    assert settings.store.shown_url == "postgresql://gw:***@db.site/dockgate"
    assert "s3cret" not in repr(settings) + str(settings)
    assert load_settings().store.url is None  # the embedded SQLite file
    config.write_text('[store]\nurl = "mysql://gw:s3cret@db.site/dockgate"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert caught.value.problems[0].startswith("store.url: ")
    assert "postgresql://" in str(caught.value) and "s3cret" not in str(caught.value)


def test_a_path_is_sqlite_and_a_url_postgresql(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    file = open_database(tmp_path / "x.sqlite3")
    assert isinstance(file, Database) and file.dialect.name == "sqlite"
    assert file.disk == file.data_dir == tmp_path.resolve()
    file.close()
    name = postgres_server.create_database("pick")
    try:
        server = open_database(postgres_server.url(name), data_dir=tmp_path)
        assert server.dialect.name == "postgresql" and server.data_dir == tmp_path
        assert server.disk is None  # the server's disk is not this machine's to watch
        health = StoreHealth(server, min_free_bytes=1 << 30)
        assert health.free_bytes() is None and health.ingest_allowed()
        server.close()
    finally:
        postgres_server.drop_database(name)


def test_a_refused_connection_never_shows_the_password(postgres_server: PostgresServer) -> None:
    password = "pw-" + os.urandom(6).hex()
    url = f"postgresql://nobody:{password}@127.0.0.1:{postgres_server.port}/missing"
    with pytest.raises(StoreError) as caught:
        open_database(url)
    message = str(caught.value)
    assert "cannot open database postgresql://nobody:***@127.0.0.1" in message
    assert password not in message and caught.value.__cause__ is None


def test_the_disk_refusing_a_write_is_known_on_both_engines() -> None:
    full = PostgresError("PostgreSQL: could not extend file: No space left on device", "53100")
    assert refused_write(full) is not None
    assert refused_write(PostgresError("PostgreSQL: syntax error", "42601")) is None


def test_placeholders_become_psycopgs_outside_quotes() -> None:
    assert pyformat("SELECT a FROM t WHERE b = ? AND c LIKE '%?%' AND d = ?") == (
        "SELECT a FROM t WHERE b = %s AND c LIKE '%%?%%' AND d = %s"
    )
    assert pyformat("SELECT 100 % ?") == "SELECT 100 %% %s"
