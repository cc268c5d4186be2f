"""The state store's schema, one migration per list entry (never edit a released entry)."""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the fleet, riders and their NFC products, trips, commands, alerts, outages, energy.
    """
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
    """,
    # 2: time spent on hold by earlier holds of a trip (``paused_at`` is the current hold's
    # start), so that on-hold minutes are priced at ``on_hold_price``.
    """
    ALTER TABLE trips ADD COLUMN held_seconds REAL NOT NULL DEFAULT 0
    """,
    # 3: API idempotency keys expire (TTL) and are bounded: pruned oldest first.
    """
    CREATE INDEX idempotency_created ON idempotency(created_at)
    """,
]
