"""The gateway database's one schema history, one migration per entry (never edit a released one).

Every table of the gateway's state lives here: the store's aggregates, the outbox, the flow's
pending rentals and the SUN replay counters. Entries 4 to 6 brought in tables that once had
histories of their own (components ``outbox`` and ``flow``, and a separate replay file): they
are written to run on a database that already has them (``IF NOT EXISTS``, ``OR IGNORE``),
and drop those old history rows, so a database of any earlier version reaches the same schema.

The history is written in SQLite's SQL and runs on PostgreSQL too: the PostgreSQL dialect
spells its types there (``BIGINT`` for ``INTEGER``: millisecond timestamps need 8 bytes;
``DOUBLE PRECISION``, ``BYTEA``, identity columns for ``AUTOINCREMENT``). An entry differs by
engine (:class:`EngineSql`) only where a translation cannot say it.
"""

from __future__ import annotations

from dockgate.gateway.store._db import BaseDatabase, EngineSql, Migration

COMPONENT = "store"

#: 1: the fleet, riders and their NFC products, trips, commands, alerts, outages, energy.
_FLEET = """
    CREATE TABLE networks (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, timezone TEXT NOT NULL DEFAULT 'UTC',
        updated_at REAL NOT NULL
    );
    CREATE TABLE clusters (
        id INTEGER PRIMARY KEY, network_id INTEGER NOT NULL REFERENCES networks(id),
        name TEXT NOT NULL, location TEXT, lat REAL NOT NULL, lon REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE stations (
        id INTEGER PRIMARY KEY, cluster_id INTEGER NOT NULL REFERENCES clusters(id),
        name TEXT NOT NULL, lat REAL NOT NULL, lon REAL NOT NULL,
        badge_reader INTEGER NOT NULL DEFAULT 0,
        max_unlock_distance INTEGER NOT NULL DEFAULT 25,
        is_online INTEGER NOT NULL DEFAULT 1, updated_at REAL NOT NULL
    );
    CREATE TABLE vehicles (
        id INTEGER PRIMARY KEY, network_id INTEGER NOT NULL REFERENCES networks(id),
        serial_number TEXT NOT NULL UNIQUE, vehicle_type TEXT NOT NULL DEFAULT 'scooter',
        lat REAL, lon REAL, battery INTEGER, status TEXT NOT NULL DEFAULT 'available',
        is_locked INTEGER NOT NULL DEFAULT 1, spot_id INTEGER, trip_id INTEGER,
        gbfs_id TEXT NOT NULL, updated_at REAL NOT NULL
    );
    CREATE TABLE spots (
        id INTEGER PRIMARY KEY, station_id INTEGER NOT NULL REFERENCES stations(id),
        number INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'free',
        vehicle_id INTEGER REFERENCES vehicles(id), updated_at REAL NOT NULL,
        UNIQUE(station_id, number)
    );
    CREATE TABLE riders (
        id INTEGER PRIMARY KEY, email TEXT, name TEXT,
        blocked INTEGER NOT NULL DEFAULT 0, block_reason TEXT, blocked_at REAL,
        credit INTEGER NOT NULL DEFAULT 0, first_purchase_done INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    );
    CREATE TABLE products (
        id INTEGER PRIMARY KEY, name TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'card',
        rider_id INTEGER REFERENCES riders(id), paired_at REAL, created_at REAL NOT NULL
    );
    CREATE TABLE records (
        id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL REFERENCES products(id),
        technology TEXT NOT NULL DEFAULT 'nfc',
        token_encryption TEXT NOT NULL DEFAULT 'static',
        key_secret TEXT, uid TEXT, is_enabled INTEGER NOT NULL DEFAULT 1,
        scan_count INTEGER NOT NULL DEFAULT 0, last_scan_at REAL, created_at REAL NOT NULL
    );
    CREATE INDEX records_uid ON records(uid);
    CREATE TABLE tag_keys (
        name TEXT PRIMARY KEY, key BLOB NOT NULL, version INTEGER NOT NULL DEFAULT 0,
        updated_at REAL NOT NULL
    );
    CREATE TABLE trips (
        id INTEGER PRIMARY KEY AUTOINCREMENT, rider_id INTEGER NOT NULL REFERENCES riders(id),
        vehicle_id INTEGER NOT NULL REFERENCES vehicles(id), record_id INTEGER,
        start_station_id INTEGER, start_spot_id INTEGER, end_station_id INTEGER,
        end_spot_id INTEGER, status TEXT NOT NULL DEFAULT 'started',
        started_at REAL NOT NULL, ended_at REAL, paused_at REAL, cost INTEGER,
        updated_at REAL NOT NULL
    );
    CREATE INDEX trips_open ON trips(status) WHERE status != 'ended';
    CREATE TABLE command_journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT, idempotency_key TEXT NOT NULL UNIQUE,
        target_kind TEXT NOT NULL, target_id INTEGER NOT NULL, command TEXT NOT NULL,
        args TEXT NOT NULL DEFAULT '{}', state TEXT NOT NULL DEFAULT 'journaled',
        outcome TEXT, trip_id INTEGER, created_at REAL NOT NULL, updated_at REAL NOT NULL
    );
    CREATE INDEX command_journal_open ON command_journal(state)
        WHERE state IN ('journaled', 'sent');
    CREATE TABLE fleet_alerts (
        id INTEGER PRIMARY KEY AUTOINCREMENT, network_id INTEGER NOT NULL,
        alert_type TEXT NOT NULL, alert_severity TEXT NOT NULL,
        cluster_id INTEGER, station_id INTEGER, spot_id INTEGER, vehicle_id INTEGER,
        details TEXT NOT NULL DEFAULT '{}', creation_date REAL NOT NULL,
        resolved_at REAL, resolved_by TEXT, dedup_key TEXT
    );
    CREATE INDEX fleet_alerts_open ON fleet_alerts(network_id) WHERE resolved_at IS NULL;
    CREATE UNIQUE INDEX fleet_alerts_dedup ON fleet_alerts(dedup_key)
        WHERE resolved_at IS NULL AND dedup_key IS NOT NULL;
    CREATE TABLE station_outages (
        id INTEGER PRIMARY KEY AUTOINCREMENT, station_id INTEGER NOT NULL REFERENCES stations(id),
        started_at REAL NOT NULL, ended_at REAL, reason TEXT
    );
    CREATE TABLE energy_readings (
        station_id INTEGER NOT NULL REFERENCES stations(id), ts REAL NOT NULL,
        energy_wh REAL NOT NULL, PRIMARY KEY(station_id, ts)
    );
    CREATE TABLE bundles (
        version INTEGER PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL,
        applied_at REAL NOT NULL
    );
    CREATE TABLE idempotency (
        key TEXT NOT NULL, scope TEXT NOT NULL, fingerprint TEXT NOT NULL,
        response TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY(scope, key)
    )
    """
#: A tag key is stored sealed (text) since keys were sealed; SQLite's column (a BLOB) also
#: holds the plain bytes of a database from before, which PostgreSQL never had.
_SEALED_TAG_KEY = ("key BLOB NOT NULL", "key TEXT NOT NULL")


def _for_postgres(sqlite: str, *swaps: tuple[str, str]) -> EngineSql:
    """A migration whose PostgreSQL text is SQLite's with each ``(old, new)`` swapped once."""
    postgresql = sqlite
    for old, new in swaps:
        if postgresql.count(old) != 1:
            raise ValueError(f"a migration swap must match once: {old!r}")
        postgresql = postgresql.replace(old, new)
    return EngineSql(sqlite, postgresql)


MIGRATIONS: list[Migration] = [
    # 1: the fleet, riders and their NFC products, trips, commands, alerts, outages, energy.
    _for_postgres(_FLEET, _SEALED_TAG_KEY),
    # 2: time spent on hold by earlier holds of a trip (``paused_at`` is the current hold's
    # start), so that on-hold minutes are priced at ``on_hold_price``.
    """
    ALTER TABLE trips ADD COLUMN held_seconds REAL NOT NULL DEFAULT 0
    """,
    # 3: API idempotency keys expire (TTL) and are bounded: pruned oldest first.
    """
    CREATE INDEX idempotency_created ON idempotency(created_at)
    """,
    # 4: the outbox (was the component "outbox", version 1): events, per-class counters and
    # the acknowledged cursor.
    """
    CREATE TABLE IF NOT EXISTS outbox_events (
        cursor INTEGER PRIMARY KEY AUTOINCREMENT, priority INTEGER NOT NULL,
        kind TEXT NOT NULL, idempotency_key TEXT NOT NULL UNIQUE, compact_key TEXT,
        created_at REAL NOT NULL, payload BLOB NOT NULL
    );
    CREATE INDEX IF NOT EXISTS outbox_by_priority ON outbox_events(priority, cursor);
    CREATE INDEX IF NOT EXISTS outbox_by_compact_key ON outbox_events(compact_key)
        WHERE compact_key IS NOT NULL;
    CREATE TABLE IF NOT EXISTS outbox_stats (
        priority INTEGER PRIMARY KEY, pending INTEGER NOT NULL DEFAULT 0,
        appended INTEGER NOT NULL DEFAULT 0, dropped INTEGER NOT NULL DEFAULT 0,
        compacted INTEGER NOT NULL DEFAULT 0, acked INTEGER NOT NULL DEFAULT 0
    );
    INSERT OR IGNORE INTO outbox_stats(priority) VALUES (0), (1), (2), (3);
    CREATE TABLE IF NOT EXISTS outbox_meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT OR IGNORE INTO outbox_meta(name, value) VALUES ('acked_cursor', 0);
    DELETE FROM schema_version WHERE component = 'outbox'
    """,
    # 5: the flow's pending rentals (was the component "flow", version 1): a spot opened for a
    # rider survives a restart.
    """
    CREATE TABLE IF NOT EXISTS flow_rentals (
        key TEXT PRIMARY KEY, command_id INTEGER NOT NULL, rider_id INTEGER NOT NULL,
        record_id INTEGER, vehicle_id INTEGER NOT NULL, serial TEXT NOT NULL,
        station_id INTEGER NOT NULL, spot_id INTEGER NOT NULL, spot INTEGER NOT NULL,
        reader TEXT, created_at REAL NOT NULL, state TEXT NOT NULL
    );
    DELETE FROM schema_version WHERE component = 'flow'
    """,
    # 6: the SUN replay counters (were a file of their own, which keeps this table): the last
    # accepted read counter per tag UID.
    """
    CREATE TABLE IF NOT EXISTS sun_counters (
        uid TEXT PRIMARY KEY, read_ctr INTEGER NOT NULL
    ) WITHOUT ROWID
    """,
    # 7: hostile inputs. State is replaced only by newer state: the device clock (effective ts,
    # ms) of each vehicle's last applied report and of each station's last applied status,
    # with how long a plausible clock outranks a restamped one. Device messages whose effect
    # is not idempotent are recognised when the broker redelivers them: their identities
    # (blake2b of topic and payload), kept a day.
    """
    CREATE TABLE vehicle_clocks (
        vehicle_id INTEGER PRIMARY KEY, report_ts INTEGER NOT NULL,
        trusted_until REAL NOT NULL
    );
    CREATE TABLE station_clocks (
        station_id INTEGER PRIMARY KEY, status_ts INTEGER NOT NULL,
        trusted_until REAL NOT NULL
    );
    CREATE TABLE inbox (
        identity BLOB PRIMARY KEY, received_at REAL NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX inbox_received ON inbox(received_at)
    """,
    # 8: trips speak the dashboard's trip states: started -> running, paused and on_hold ->
    # on-hold, ended -> finished (``cancelled`` is new). The column's default still reads
    # 'started': every insert names its state.
    """
    UPDATE trips SET status = CASE status WHEN 'started' THEN 'running'
        WHEN 'paused' THEN 'on-hold' WHEN 'on_hold' THEN 'on-hold'
        WHEN 'ended' THEN 'finished' ELSE status END;
    DROP INDEX IF EXISTS trips_open;
    CREATE INDEX trips_open ON trips(status) WHERE status IN ('running', 'on-hold')
    """,
    # 9: the outbox's class 3 (telemetry) is gone: nothing ever appended to it; any event an
    # earlier test or benchmark left there joins STATE (2) with its counters. One row the
    # storage probe commits to learn that the disk takes writes again (``StoreHealth``).
    """
    UPDATE outbox_events SET priority = 2 WHERE priority = 3;
    UPDATE outbox_stats SET
        pending = pending + (SELECT pending FROM outbox_stats WHERE priority = 3),
        appended = appended + (SELECT appended FROM outbox_stats WHERE priority = 3),
        dropped = dropped + (SELECT dropped FROM outbox_stats WHERE priority = 3),
        compacted = compacted + (SELECT compacted FROM outbox_stats WHERE priority = 3),
        acked = acked + (SELECT acked FROM outbox_stats WHERE priority = 3)
        WHERE priority = 2 AND EXISTS (SELECT 1 FROM outbox_stats WHERE priority = 3);
    DELETE FROM outbox_stats WHERE priority = 3;
    CREATE TABLE storage_probe (
        id INTEGER PRIMARY KEY CHECK (id = 1), at REAL NOT NULL
    )
    """,
    # 10: a cluster's lease (``dockgate.gateway.cluster``, docs/cluster.md): a row per site
    # naming the node that leads (NULL: nobody), its fencing token (one up at every change
    # of holder) and when it was taken, renewed and ends, in seconds by the database's clock.
    """
    CREATE TABLE cluster_lease (
        site TEXT PRIMARY KEY, holder TEXT, holder_url TEXT,
        token INTEGER NOT NULL DEFAULT 0,
        acquired_at REAL, renewed_at REAL, expires_at REAL
    )
    """,
    # 11: the outbox hands out its cursors from a counter row updated in the appending
    # transaction (a rolled-back append gives its numbers back): a PostgreSQL sequence
    # does not, and a backend would see a gap it cannot tell from a lost event. It starts
    # at the last cursor the table's own counter gave.
    EngineSql(
        """
        INSERT INTO outbox_meta(name, value) SELECT 'last_cursor',
            COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'outbox_events'), 0)
        """,
        """
        INSERT INTO outbox_meta(name, value) SELECT 'last_cursor', COALESCE(
            pg_sequence_last_value(pg_get_serial_sequence('outbox_events', 'cursor')::regclass),
            0)
        """,
    ),
]


def migrate(db: BaseDatabase) -> int:
    """Bring ``db`` to the latest schema (a no-op when it is there); the version reached."""
    return db.migrate(COMPONENT, MIGRATIONS)
