"""The gateway's state: fleet, riders and their NFC records, trips, commands, alerts, energy.

Every method commits on its own unless it is called inside ``store.transaction()``, where it
joins the caller's transaction: the tap-to-ride flow writes a trip, its command journal entry
and its outbox event in one ``with store.transaction():`` block.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from dockgate.gateway.protocol.enums import AlertSeverity, AlertType
from dockgate.gateway.store._db import Database, StoreError
from dockgate.gateway.store._schema import MIGRATIONS

ALERT_TYPES = tuple(t.value for t in AlertType)  # the dashboard's enums, one home
ALERT_SEVERITIES = tuple(s.value for s in AlertSeverity)
TECHNOLOGIES = ("nfc", "qrcode", "data_matrix", "aztec", "pdf417")
TOKEN_ENCRYPTIONS = ("static", "aes-128")
COMMAND_STATES = ("journaled", "sent", "acked", "failed", "timeout")
Row = dict[str, Any]


class NotFound(StoreError):
    """The named row does not exist."""


class Conflict(StoreError):
    """The write contradicts the current state (a vehicle already on a trip, ...)."""


def _row(row: sqlite3.Row | None) -> Row | None:
    return dict(row) if row is not None else None


def new_gbfs_id() -> str:
    """A fresh random public vehicle id: GBFS wants ids that change after every trip."""
    return secrets.token_hex(8)


class Store:
    """Typed reads and writes over the state tables of one ``Database``."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], float] = time.time,
        idempotency_ttl: float = 24 * 3600.0,
        idempotency_max: int = 100_000,
    ) -> None:
        self.db = db
        self.clock = clock
        self.idempotency_ttl = idempotency_ttl
        self.idempotency_max = idempotency_max
        self._remembered = 0
        db.migrate("store", MIGRATIONS)

    @classmethod
    def open(cls, path: str | Path, **kwargs: Any) -> Store:
        """Open (and migrate) the store in the SQLite file at ``path``."""
        return cls(Database(path), **kwargs)

    def transaction(self) -> AbstractContextManager[sqlite3.Connection]:
        """Group writes (store and outbox alike) into one atomic commit."""
        return self.db.transaction()

    def _one(self, sql: str, args: Iterable[Any] = ()) -> Row | None:
        with self.db.lock:
            return _row(self.db.conn.execute(sql, tuple(args)).fetchone())

    def _all(self, sql: str, args: Iterable[Any] = ()) -> list[Row]:
        with self.db.lock:
            return [dict(r) for r in self.db.conn.execute(sql, tuple(args)).fetchall()]

    def _must(self, table: str, id_: int) -> Row:
        row = self._one(f"SELECT * FROM {table} WHERE id = ?", (id_,))
        if row is None:
            raise NotFound(f"{table[:-1]} {id_} not found")
        return row

    # -- fleet topology -------------------------------------------------------------------
    def upsert_network(self, id: int, name: str, timezone: str = "UTC") -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO networks(id, name, timezone, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET name=excluded.name, timezone=excluded.timezone,"
                " updated_at=excluded.updated_at",
                (id, name, timezone, self.clock()),
            )

    def upsert_cluster(
        self, id: int, network_id: int, name: str, lat: float, lon: float, location: str = ""
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO clusters(id, network_id, name, location, lat, lon, updated_at)"
                " VALUES (?,?,?,?,?,?,?) ON CONFLICT(id) DO UPDATE SET"
                " network_id=excluded.network_id, name=excluded.name,"
                " location=excluded.location, lat=excluded.lat, lon=excluded.lon,"
                " updated_at=excluded.updated_at",
                (id, network_id, name, location, lat, lon, self.clock()),
            )

    def upsert_station(
        self,
        id: int,
        cluster_id: int,
        name: str,
        lat: float,
        lon: float,
        *,
        badge_reader: bool = False,
        max_unlock_distance: int = 25,
    ) -> None:
        if not 25 <= max_unlock_distance <= 500:
            raise StoreError("max_unlock_distance must be within 25..500 metres")
        with self.transaction() as c:
            c.execute(
                "INSERT INTO stations(id, cluster_id, name, lat, lon, badge_reader,"
                " max_unlock_distance, updated_at) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET cluster_id=excluded.cluster_id,"
                " name=excluded.name, lat=excluded.lat, lon=excluded.lon,"
                " badge_reader=excluded.badge_reader,"
                " max_unlock_distance=excluded.max_unlock_distance,"
                " updated_at=excluded.updated_at",
                (
                    id,
                    cluster_id,
                    name,
                    lat,
                    lon,
                    int(badge_reader),
                    max_unlock_distance,
                    self.clock(),
                ),
            )

    def upsert_spot(self, id: int, station_id: int, number: int) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO spots(id, station_id, number, updated_at) VALUES (?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET station_id=excluded.station_id,"
                " number=excluded.number, updated_at=excluded.updated_at",
                (id, station_id, number, self.clock()),
            )

    def upsert_vehicle(
        self,
        id: int,
        network_id: int,
        serial_number: str,
        *,
        vehicle_type: str = "scooter",
        battery: int | None = None,
        lat: float | None = None,
        lon: float | None = None,
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO vehicles(id, network_id, serial_number, vehicle_type, battery,"
                " lat, lon, gbfs_id, updated_at) VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET network_id=excluded.network_id,"
                " serial_number=excluded.serial_number, vehicle_type=excluded.vehicle_type,"
                " battery=COALESCE(excluded.battery, battery), lat=COALESCE(excluded.lat, lat),"
                " lon=COALESCE(excluded.lon, lon), updated_at=excluded.updated_at",
                (
                    id,
                    network_id,
                    serial_number,
                    vehicle_type,
                    battery,
                    lat,
                    lon,
                    new_gbfs_id(),
                    self.clock(),
                ),
            )

    def update_vehicle(
        self,
        id: int,
        *,
        battery: int | None = None,
        lat: float | None = None,
        lon: float | None = None,
        status: str | None = None,
        is_locked: bool | None = None,
    ) -> None:
        """Record a vehicle's reported state; fields left ``None`` keep their value."""
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE vehicles SET battery=COALESCE(?, battery), lat=COALESCE(?, lat),"
                " lon=COALESCE(?, lon), status=COALESCE(?, status),"
                " is_locked=COALESCE(?, is_locked), updated_at=? WHERE id=?",
                (
                    battery,
                    lat,
                    lon,
                    status,
                    None if is_locked is None else int(is_locked),
                    self.clock(),
                    id,
                ),
            )
            if cur.rowcount == 0:
                raise NotFound(f"vehicle {id} not found")

    def update_vehicles(
        self, reports: Iterable[tuple[int, int | None, float | None, float | None, bool | None]]
    ) -> None:
        """``update_vehicle`` for many: ``(id, battery, lat, lon, is_locked)`` each, in order,
        with one prepared statement (``executemany``); ``None`` keeps a field's value."""
        now = self.clock()
        rows = [
            (battery, lat, lon, None if locked is None else int(locked), now, id_)
            for id_, battery, lat, lon, locked in reports
        ]
        if not rows:
            return
        with self.transaction() as c:
            cur = c.executemany(
                "UPDATE vehicles SET battery=COALESCE(?, battery), lat=COALESCE(?, lat),"
                " lon=COALESCE(?, lon), is_locked=COALESCE(?, is_locked), updated_at=?"
                " WHERE id=?",
                rows,
            )
            if cur.rowcount != len(rows):
                raise NotFound("a vehicle to update was not found")

    def dock_vehicle(self, vehicle_id: int, spot_id: int) -> None:
        """A vehicle sits in a spot (from a station's report)."""
        with self.transaction() as c:
            self._must("vehicles", vehicle_id)
            self._must("spots", spot_id)
            now = self.clock()
            c.execute(
                "UPDATE spots SET vehicle_id=NULL, state='free', updated_at=? WHERE vehicle_id=?",
                (now, vehicle_id),
            )
            c.execute(
                "UPDATE spots SET vehicle_id=?, state='occupied', updated_at=? WHERE id=?",
                (vehicle_id, now, spot_id),
            )
            c.execute(
                "UPDATE vehicles SET spot_id=?, updated_at=? WHERE id=?",
                (spot_id, now, vehicle_id),
            )

    def undock_spot(self, spot_id: int, serial_number: str | None = None) -> int | None:
        """A vehicle left a spot without a rental (the station says so): the spot is free.

        With ``serial_number`` only that vehicle is taken out (a report about a vehicle that
        is no longer there changes nothing). Returns the id of the vehicle that left, or None.
        """
        with self.transaction() as c:
            spot = self._must("spots", spot_id)
            vehicle_id = spot["vehicle_id"]
            if vehicle_id is None:
                return None
            if serial_number is not None:
                v = self._one("SELECT serial_number FROM vehicles WHERE id=?", (vehicle_id,))
                if v is None or v["serial_number"] != serial_number:
                    return None
            now = self.clock()
            c.execute(
                "UPDATE spots SET vehicle_id=NULL, state='free', updated_at=? WHERE id=?",
                (now, spot_id),
            )
            c.execute(
                "UPDATE vehicles SET spot_id=NULL, updated_at=? WHERE id=? AND spot_id=?",
                (now, vehicle_id, spot_id),
            )
            return int(vehicle_id)

    def networks(self) -> list[Row]:
        return self._all("SELECT id, name, timezone FROM networks ORDER BY id")

    def clusters(self, network_ids: Iterable[int] | None = None) -> list[Row]:
        ids = list(network_ids or [])
        sql = (
            "SELECT c.*, (SELECT count(*) FROM spots s JOIN stations t ON s.station_id=t.id"
            " WHERE t.cluster_id=c.id) AS spot_count,"
            " (SELECT count(*) FROM spots s JOIN stations t ON s.station_id=t.id"
            " WHERE t.cluster_id=c.id AND s.vehicle_id IS NOT NULL) AS vehicle_count"
            " FROM clusters c"
        )
        if ids:
            sql += f" WHERE c.network_id IN ({','.join('?' * len(ids))})"
        return self._all(sql + " ORDER BY c.id", ids)

    def cluster(self, id: int) -> Row:
        return self._must("clusters", id)

    def station(self, id: int) -> Row:
        return self._must("stations", id)

    def all_stations(self) -> list[Row]:
        return self._all("SELECT * FROM stations ORDER BY id")

    def stations(self, cluster_id: int) -> list[Row]:
        """The cluster's stations, each with its spots and the vehicle docked in each."""
        self._must("clusters", cluster_id)
        stations = self._all("SELECT * FROM stations WHERE cluster_id=? ORDER BY id", (cluster_id,))
        for station in stations:
            spots = self._all(
                "SELECT * FROM spots WHERE station_id=? ORDER BY number", (station["id"],)
            )
            for spot in spots:
                spot["vehicle"] = (
                    self._one(
                        "SELECT id, serial_number, vehicle_type, battery, status"
                        " FROM vehicles WHERE id=?",
                        (spot["vehicle_id"],),
                    )
                    if spot["vehicle_id"] is not None
                    else None
                )
            station["spots"] = spots
        return stations

    def spots(self, station_id: int | None = None) -> list[Row]:
        if station_id is None:
            return self._all("SELECT * FROM spots ORDER BY station_id, number")
        return self._all("SELECT * FROM spots WHERE station_id=? ORDER BY number", (station_id,))

    def spot(self, id: int) -> Row:
        return self._must("spots", id)

    def vehicles(self, network_ids: Iterable[int] | None = None) -> list[Row]:
        ids = list(network_ids or [])
        sql = "SELECT * FROM vehicles"
        if ids:
            sql += f" WHERE network_id IN ({','.join('?' * len(ids))})"
        return self._all(sql + " ORDER BY id", ids)

    def vehicle(self, id: int) -> Row:
        return self._must("vehicles", id)

    def vehicle_by_serial(self, serial_number: str) -> Row | None:
        """The vehicle with this serial number (the device id on MQTT), or None; indexed."""
        return self._one("SELECT * FROM vehicles WHERE serial_number = ?", (serial_number,))

    def vehicles_by_serial(self, serial_numbers: Iterable[str]) -> dict[str, Row]:
        """The vehicles with these serial numbers, by serial (unknown ones left out)."""
        wanted = list(dict.fromkeys(serial_numbers))
        found: dict[str, Row] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            for row in self._all(
                f"SELECT * FROM vehicles WHERE serial_number IN ({','.join('?' * len(part))})",
                part,
            ):
                found[row["serial_number"]] = row
        return found

    def _by_id(self, table: str, ids: Iterable[int]) -> dict[int, Row]:
        wanted = list(dict.fromkeys(ids))
        found: dict[int, Row] = {}
        for i in range(0, len(wanted), 500):
            part = wanted[i : i + 500]
            for row in self._all(
                f"SELECT * FROM {table} WHERE id IN ({','.join('?' * len(part))})", part
            ):
                found[row["id"]] = row
        return found

    # -- riders, products, records, tag keys ---------------------------------------------
    def upsert_rider(
        self,
        id: int,
        *,
        email: str | None = None,
        name: str | None = None,
        credit: int | None = None,
        first_purchase_done: bool | None = None,
    ) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT INTO riders(id, email, name, credit, first_purchase_done, updated_at)"
                " VALUES (?,?,?,COALESCE(?,0),COALESCE(?,0),?) ON CONFLICT(id) DO UPDATE SET"
                " email=COALESCE(excluded.email, email), name=COALESCE(excluded.name, name),"
                " credit=COALESCE(?, credit),"
                " first_purchase_done=COALESCE(?, first_purchase_done),"
                " updated_at=excluded.updated_at",
                (
                    id,
                    email,
                    name,
                    credit,
                    None if first_purchase_done is None else int(first_purchase_done),
                    self.clock(),
                    credit,
                    None if first_purchase_done is None else int(first_purchase_done),
                ),
            )

    def rider(self, id: int) -> Row:
        return self._must("riders", id)

    def riders_by_id(self, ids: Iterable[int]) -> dict[int, Row]:
        """The riders with these ids, by id (unknown ones left out): one query per 500."""
        return self._by_id("riders", ids)

    def riders(self, *, limit: int = 100, after_id: int = 0) -> list[Row]:
        return self._all("SELECT * FROM riders WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))

    def set_blocked(self, rider_id: int, blocked: bool, reason: str | None = None) -> None:
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE riders SET blocked=?, block_reason=?, blocked_at=?, updated_at=?"
                " WHERE id=?",
                (
                    int(blocked),
                    reason if blocked else None,
                    self.clock() if blocked else None,
                    self.clock(),
                    rider_id,
                ),
            )
            if cur.rowcount == 0:
                raise NotFound(f"rider {rider_id} not found")

    def add_credit(self, rider_id: int, delta: int) -> int:
        """Change a rider's credit (in cents) and return the new balance."""
        with self.transaction() as c:
            self._must("riders", rider_id)
            c.execute(
                "UPDATE riders SET credit = credit + ?, updated_at=? WHERE id=?",
                (delta, self.clock(), rider_id),
            )
            return int(self.rider(rider_id)["credit"])

    def create_product(self, name: str, kind: str = "card", *, id: int | None = None) -> int:
        with self.transaction() as c:
            cur = c.execute(
                "INSERT INTO products(id, name, kind, created_at) VALUES (?,?,?,?)",
                (id, name, kind, self.clock()),
            )
            return int(cur.lastrowid if id is None else id)

    def product(self, id: int) -> Row:
        return self._must("products", id)

    def products(self, *, rider_id: int | None = None) -> list[Row]:
        if rider_id is None:
            return self._all("SELECT * FROM products ORDER BY id")
        return self._all("SELECT * FROM products WHERE rider_id=? ORDER BY id", (rider_id,))

    def pair_product(self, product_id: int, rider_id: int | None) -> None:
        """Pair a product (and so all its records) to a rider, or unpair it with ``None``."""
        with self.transaction() as c:
            self._must("products", product_id)
            if rider_id is not None:
                self._must("riders", rider_id)
            c.execute(
                "UPDATE products SET rider_id=?, paired_at=? WHERE id=?",
                (rider_id, self.clock() if rider_id is not None else None, product_id),
            )

    def create_record(
        self,
        product_id: int,
        *,
        technology: str = "nfc",
        token_encryption: str = "static",
        key: str | None = None,
        uid: str | None = None,
        id: int | None = None,
    ) -> int:
        """Add a record (one NFC chip or code) to a product; ``key`` is stored, never shown."""
        if technology not in TECHNOLOGIES:
            raise StoreError(f"technology must be one of {', '.join(TECHNOLOGIES)}")
        if token_encryption not in TOKEN_ENCRYPTIONS:
            raise StoreError(f"token_encryption must be one of {', '.join(TOKEN_ENCRYPTIONS)}")
        with self.transaction() as c:
            self._must("products", product_id)
            cur = c.execute(
                "INSERT INTO records(id, product_id, technology, token_encryption, key_secret,"
                " uid, created_at) VALUES (?,?,?,?,?,?,?)",
                (
                    id,
                    product_id,
                    technology,
                    token_encryption,
                    key,
                    uid.upper() if uid else None,
                    self.clock(),
                ),
            )
            return int(cur.lastrowid if id is None else id)

    _RECORD_COLUMNS = (
        "id, product_id, technology, token_encryption, uid, is_enabled, scan_count,"
        " last_scan_at, created_at"
    )

    def record(self, id: int) -> Row:
        """A record without its key (use ``record_key`` where the key is really needed)."""
        row = self._one(f"SELECT {self._RECORD_COLUMNS} FROM records WHERE id=?", (id,))
        if row is None:
            raise NotFound(f"record {id} not found")
        return row

    def records(self, product_id: int | None = None) -> list[Row]:
        if product_id is None:
            return self._all(f"SELECT {self._RECORD_COLUMNS} FROM records ORDER BY id")
        return self._all(
            f"SELECT {self._RECORD_COLUMNS} FROM records WHERE product_id=? ORDER BY id",
            (product_id,),
        )

    def record_key(self, id: int) -> str | None:
        row = self._one("SELECT key_secret FROM records WHERE id=?", (id,))
        if row is None:
            raise NotFound(f"record {id} not found")
        return row["key_secret"]

    def record_by_uid(self, uid: str) -> Row | None:
        return self._one(
            f"SELECT {self._RECORD_COLUMNS} FROM records WHERE uid=? AND is_enabled=1",
            (uid.upper(),),
        )

    def rider_for_record(self, record_id: int) -> Row | None:
        """The rider a record's product is paired to, if any."""
        return self._one(
            "SELECT r.* FROM records c JOIN products p ON c.product_id=p.id"
            " JOIN riders r ON p.rider_id=r.id WHERE c.id=?",
            (record_id,),
        )

    def count_scan(self, record_id: int, *, uid: str | None = None) -> int:
        """Count one scan of a record (and learn its UID on first dynamic scan)."""
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE records SET scan_count=scan_count+1, last_scan_at=?,"
                " uid=COALESCE(uid, ?) WHERE id=?",
                (self.clock(), uid.upper() if uid else None, record_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"record {record_id} not found")
            return int(self.record(record_id)["scan_count"])

    def set_tag_key(self, name: str, key: bytes) -> int:
        """Store (or rotate) a tag key; returns its new version. Keys are never read back out
        through the API: only ``tag_key`` (for the verifier) returns the bytes."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO tag_keys(name, key, version, updated_at) VALUES (?,?,1,?)"
                " ON CONFLICT(name) DO UPDATE SET key=excluded.key, version=version+1,"
                " updated_at=excluded.updated_at",
                (name, key, self.clock()),
            )
            return int(self._one("SELECT version FROM tag_keys WHERE name=?", (name,))["version"])

    def tag_key(self, name: str) -> bytes | None:
        row = self._one("SELECT key FROM tag_keys WHERE name=?", (name,))
        return bytes(row["key"]) if row else None

    def tag_key_names(self) -> list[Row]:
        return self._all("SELECT name, version, updated_at FROM tag_keys ORDER BY name")

    # -- trips ------------------------------------------------------------------------------
    def start_trip(
        self,
        rider_id: int,
        vehicle_id: int,
        *,
        record_id: int | None = None,
        station_id: int | None = None,
        spot_id: int | None = None,
    ) -> int:
        """Open a trip: the vehicle leaves its spot, gets a fresh GBFS id and is in use."""
        with self.transaction() as c:
            vehicle = self._must("vehicles", vehicle_id)
            self._must("riders", rider_id)
            if vehicle["trip_id"] is not None:
                raise Conflict(f"vehicle {vehicle_id} is already on trip {vehicle['trip_id']}")
            now = self.clock()
            spot_id = spot_id if spot_id is not None else vehicle["spot_id"]
            cur = c.execute(
                "INSERT INTO trips(rider_id, vehicle_id, record_id, start_station_id,"
                " start_spot_id, started_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                (rider_id, vehicle_id, record_id, station_id, spot_id, now, now),
            )
            trip_id = int(cur.lastrowid)
            c.execute(
                "UPDATE spots SET vehicle_id=NULL, state='free', updated_at=? WHERE vehicle_id=?",
                (now, vehicle_id),
            )
            c.execute(
                "UPDATE vehicles SET trip_id=?, spot_id=NULL, status='in_use', is_locked=0,"
                " gbfs_id=?, updated_at=? WHERE id=?",
                (trip_id, new_gbfs_id(), now, vehicle_id),
            )
            return trip_id

    def end_trip(
        self,
        trip_id: int,
        *,
        cost: int = 0,
        station_id: int | None = None,
        spot_id: int | None = None,
    ) -> Row:
        """Close a trip (docked at any station), charge its cost and free the vehicle."""
        with self.transaction() as c:
            trip = self._must("trips", trip_id)
            if trip["status"] == "ended":
                raise Conflict(f"trip {trip_id} has already ended")
            now = self.clock()
            c.execute(
                "UPDATE trips SET status='ended', ended_at=?, end_station_id=?, end_spot_id=?,"
                " cost=?, updated_at=? WHERE id=?",
                (now, station_id, spot_id, cost, now, trip_id),
            )
            c.execute(
                "UPDATE riders SET credit=credit-?, updated_at=? WHERE id=?",
                (cost, now, trip["rider_id"]),
            )
            c.execute(
                "UPDATE vehicles SET trip_id=NULL, status='available', is_locked=1,"
                " gbfs_id=?, updated_at=? WHERE id=?",
                (new_gbfs_id(), now, trip["vehicle_id"]),
            )
            if spot_id is not None:
                self.dock_vehicle(trip["vehicle_id"], spot_id)
            return self._must("trips", trip_id)

    def set_trip_status(self, trip_id: int, status: str) -> None:
        """Pause or hold (``paused`` / ``on_hold``) or resume (``started``) a trip.

        A hold's start is kept in ``paused_at`` (a second hold while held keeps the first
        start); resuming adds the hold to ``held_seconds``, so every on-hold minute is priced.
        """
        if status not in {"started", "paused", "on_hold"}:
            raise StoreError(f"unknown trip status {status!r}")
        with self.transaction() as c:
            now = self.clock()
            held = status != "started"
            cur = c.execute(
                "UPDATE trips SET"
                " held_seconds = held_seconds + CASE WHEN ? = 0 AND paused_at IS NOT NULL"
                "  THEN max(0, ? - paused_at) ELSE 0 END,"
                " paused_at = CASE WHEN ? = 0 THEN NULL ELSE COALESCE(paused_at, ?) END,"
                " status=?, updated_at=? WHERE id=? AND status != 'ended'",
                (int(held), now, int(held), now, status, now, trip_id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"open trip {trip_id} not found")

    @staticmethod
    def hold_seconds(trip: Row, now: float) -> float:
        """Seconds a trip has spent on hold or paused up to ``now`` (earlier holds included)."""
        current = 0.0
        if trip["status"] in ("paused", "on_hold") and trip["paused_at"] is not None:
            current = max(0.0, now - trip["paused_at"])
        return float(trip.get("held_seconds") or 0.0) + current

    def trip(self, id: int) -> Row:
        return self._must("trips", id)

    def trips_by_id(self, ids: Iterable[int]) -> dict[int, Row]:
        """The trips with these ids, by id (unknown ones left out): one query per 500."""
        return self._by_id("trips", ids)

    def open_trips(self, rider_id: int | None = None) -> list[Row]:
        if rider_id is None:
            return self._all("SELECT * FROM trips WHERE status != 'ended' ORDER BY id")
        return self._all(
            "SELECT * FROM trips WHERE status != 'ended' AND rider_id=? ORDER BY id",
            (rider_id,),
        )

    def trips(self, *, after_id: int = 0, limit: int = 100) -> list[Row]:
        return self._all("SELECT * FROM trips WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))

    # -- command journal ----------------------------------------------------------------------
    def journal_command(
        self,
        idempotency_key: str,
        target_kind: str,
        target_id: int,
        command: str,
        args: dict[str, Any] | None = None,
        *,
        trip_id: int | None = None,
    ) -> tuple[Row, bool]:
        """Write a command down before it is sent. Returns (entry, created); the same key
        returns the existing entry, so a retried request never makes a second command."""
        if target_kind not in {"vehicle", "spot", "station"}:
            raise StoreError("target_kind must be vehicle, spot or station")
        now = self.clock()
        text = json.dumps(args or {}, sort_keys=True)
        with self.transaction() as c:
            # One statement in the usual case (a new key); an existing key is read back.
            cur = c.execute(
                "INSERT INTO command_journal(idempotency_key, target_kind, target_id, command,"
                " args, trip_id, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?)"
                " ON CONFLICT(idempotency_key) DO NOTHING",
                (
                    idempotency_key,
                    target_kind,
                    target_id,
                    command,
                    text,
                    trip_id,
                    now,
                    now,
                ),
            )
            if cur.rowcount == 0:
                existing = self._one(
                    "SELECT * FROM command_journal WHERE idempotency_key=?", (idempotency_key,)
                )
                if existing is None:  # pragma: no cover - only the key can conflict
                    raise StoreError(f"command {idempotency_key!r} was not journaled")
                return existing, False
            entry = {  # the row as written: no need to read it back
                "id": int(cur.lastrowid),
                "idempotency_key": idempotency_key,
                "target_kind": target_kind,
                "target_id": target_id,
                "command": command,
                "args": text,
                "state": "journaled",
                "outcome": None,
                "trip_id": trip_id,
                "created_at": now,
                "updated_at": now,
            }
            return entry, True

    def mark_command(self, id: int, state: str, outcome: dict[str, Any] | None = None) -> None:
        """Move a journaled command on: ``sent`` before the wire, then acked/failed/timeout."""
        if state not in COMMAND_STATES:
            raise StoreError(f"unknown command state {state!r}")
        with self.transaction() as c:
            cur = c.execute(
                "UPDATE command_journal SET state=?, outcome=COALESCE(?, outcome),"
                " updated_at=? WHERE id=?",
                (state, None if outcome is None else json.dumps(outcome), self.clock(), id),
            )
            if cur.rowcount == 0:
                raise NotFound(f"command {id} not found")

    def mark_commands(self, ids: Iterable[int], state: str) -> None:
        """``mark_command`` for many (no outcome), one prepared statement."""
        if state not in COMMAND_STATES:
            raise StoreError(f"unknown command state {state!r}")
        now = self.clock()
        with self.transaction() as c:
            c.executemany(
                "UPDATE command_journal SET state=?, updated_at=? WHERE id=?",
                [(state, now, id_) for id_ in ids],
            )

    def settle_commands(self, items: Iterable[tuple[int, str, dict[str, Any] | None]]) -> None:
        """``mark_command`` for many ``(id, state, outcome)``, one prepared statement, one
        transaction (or the caller's); ``NotFound`` (nothing written) if any id is unknown."""
        now = self.clock()
        rows = []
        for id_, state, outcome in items:
            if state not in COMMAND_STATES:
                raise StoreError(f"unknown command state {state!r}")
            rows.append((state, None if outcome is None else json.dumps(outcome), now, id_))
        if not rows:
            return
        with self.transaction() as c, self.db.savepoint():
            cur = c.executemany(
                "UPDATE command_journal SET state=?, outcome=COALESCE(?, outcome),"
                " updated_at=? WHERE id=?",
                rows,
            )
            if cur.rowcount != len(rows):
                raise NotFound(f"{len(rows) - cur.rowcount} of {len(rows)} commands not found")

    def command(self, id: int) -> Row:
        return self._must("command_journal", id)

    def command_by_key(self, idempotency_key: str) -> Row | None:
        return self._one(
            "SELECT * FROM command_journal WHERE idempotency_key=?", (idempotency_key,)
        )

    def unfinished_commands(self) -> list[Row]:
        """Commands journaled or sent but without an outcome: what a restart must settle
        (a ``sent`` one may have reached the device and must not be sent blindly again)."""
        return self._all(
            "SELECT * FROM command_journal WHERE state IN ('journaled','sent') ORDER BY id"
        )

    # -- fleet alerts, outages, energy ---------------------------------------------------------
    def raise_alert(
        self,
        network_id: int,
        alert_type: str,
        alert_severity: str,
        *,
        cluster_id: int | None = None,
        station_id: int | None = None,
        spot_id: int | None = None,
        vehicle_id: int | None = None,
        details: dict[str, Any] | None = None,
        dedup_key: str | None = None,
    ) -> tuple[int, bool]:
        """Open an alert; with ``dedup_key`` an open alert with the same key is reused.
        Returns (alert id, created)."""
        if alert_type not in ALERT_TYPES:
            raise StoreError(f"unknown alert_type {alert_type!r}")
        if alert_severity not in ALERT_SEVERITIES:
            raise StoreError(f"unknown alert_severity {alert_severity!r}")
        with self.transaction() as c:
            if dedup_key is not None:
                row = self._one(
                    "SELECT id FROM fleet_alerts WHERE dedup_key=? AND resolved_at IS NULL",
                    (dedup_key,),
                )
                if row is not None:
                    return int(row["id"]), False
            cur = c.execute(
                "INSERT INTO fleet_alerts(network_id, alert_type, alert_severity, cluster_id,"
                " station_id, spot_id, vehicle_id, details, creation_date, dedup_key)"
                " VALUES (?,?,?,?,?,?,?,?,?,?)",
                (
                    network_id,
                    alert_type,
                    alert_severity,
                    cluster_id,
                    station_id,
                    spot_id,
                    vehicle_id,
                    json.dumps(details or {}),
                    self.clock(),
                    dedup_key,
                ),
            )
            return int(cur.lastrowid), True

    def alerts(
        self,
        network_ids: Iterable[int],
        *,
        resolved: bool,
        alert_type: str | None = None,
        alert_severity: str | None = None,
        cluster_id: int | None = None,
        vehicle_id: int | None = None,
        creation_date_min: float | None = None,
        creation_date_max: float | None = None,
        resolved_at_min: float | None = None,
        resolved_at_max: float | None = None,
        sort_by: str = "creation_date",
        sort_dir: str = "DESC",
        last_primary_key: int | None = None,
        primary_key_dir: str = "DESC",
        page_size: int = 20,
    ) -> list[Row]:
        """Current (``resolved=False``) or past alerts with the dashboard's filters."""
        ids = list(network_ids)
        where = [f"network_id IN ({','.join('?' * len(ids))})" if ids else "1=1"]
        args: list[Any] = list(ids)
        where.append("resolved_at IS NOT NULL" if resolved else "resolved_at IS NULL")
        for column, op, value in (
            ("alert_type", "=", alert_type),
            ("alert_severity", "=", alert_severity),
            ("cluster_id", "=", cluster_id),
            ("vehicle_id", "=", vehicle_id),
            ("creation_date", ">=", creation_date_min),
            ("creation_date", "<", creation_date_max),
            ("resolved_at", ">=", resolved_at_min),
            ("resolved_at", "<", resolved_at_max),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                args.append(value)
        pk_dir = "ASC" if primary_key_dir.upper() == "ASC" else "DESC"
        if last_primary_key is not None:
            where.append("id > ?" if pk_dir == "ASC" else "id < ?")
            args.append(last_primary_key)
        if sort_by not in {"creation_date", "alert_severity", "resolved_at"}:
            raise StoreError(f"cannot sort by {sort_by!r}")
        direction = "ASC" if sort_dir.upper() == "ASC" else "DESC"
        sql = (
            f"SELECT * FROM fleet_alerts WHERE {' AND '.join(where)}"
            f" ORDER BY {sort_by} {direction}, id {pk_dir} LIMIT ?"
        )
        rows = self._all(sql, [*args, page_size])
        for row in rows:
            row["details"] = json.loads(row["details"])
        return rows

    def alert(self, id: int) -> Row:
        row = self._must("fleet_alerts", id)
        row["details"] = json.loads(row["details"])
        return row

    def resolve_alerts(self, alert_ids: Iterable[int], resolved_by: str = "api") -> list[int]:
        """Resolve open alerts; returns the ids that were open and are now resolved."""
        done: list[int] = []
        with self.transaction() as c:
            now = self.clock()
            for alert_id in alert_ids:
                cur = c.execute(
                    "UPDATE fleet_alerts SET resolved_at=?, resolved_by=?"
                    " WHERE id=? AND resolved_at IS NULL",
                    (now, resolved_by, alert_id),
                )
                if cur.rowcount:
                    done.append(alert_id)
        return done

    def start_outage(self, station_id: int, reason: str = "") -> int:
        """A station went offline; an open outage is reused rather than duplicated."""
        with self.transaction() as c:
            self._must("stations", station_id)
            row = self._one(
                "SELECT id FROM station_outages WHERE station_id=? AND ended_at IS NULL",
                (station_id,),
            )
            c.execute("UPDATE stations SET is_online=0 WHERE id=?", (station_id,))
            if row:
                return int(row["id"])
            cur = c.execute(
                "INSERT INTO station_outages(station_id, started_at, reason) VALUES (?,?,?)",
                (station_id, self.clock(), reason),
            )
            return int(cur.lastrowid)

    def end_outage(self, station_id: int) -> None:
        with self.transaction() as c:
            c.execute(
                "UPDATE station_outages SET ended_at=? WHERE station_id=? AND ended_at IS NULL",
                (self.clock(), station_id),
            )
            c.execute("UPDATE stations SET is_online=1 WHERE id=?", (station_id,))

    def outages(self, cluster_id: int) -> list[Row]:
        self._must("clusters", cluster_id)
        return self._all(
            "SELECT o.* FROM station_outages o JOIN stations s ON o.station_id=s.id"
            " WHERE s.cluster_id=? ORDER BY o.id",
            (cluster_id,),
        )

    def add_energy(self, station_id: int, ts: float, energy_wh: float) -> None:
        with self.transaction() as c:
            c.execute(
                "INSERT OR REPLACE INTO energy_readings(station_id, ts, energy_wh) VALUES (?,?,?)",
                (station_id, ts, energy_wh),
            )

    def energy_consumption(self, station_id: int, start: float, end: float) -> Row:
        """Energy used by a station between two times (sum of readings, Wh)."""
        self._must("stations", station_id)
        row = self._one(
            "SELECT count(*) AS readings, COALESCE(sum(energy_wh), 0) AS energy_wh"
            " FROM energy_readings WHERE station_id=? AND ts >= ? AND ts < ?",
            (station_id, start, end),
        )
        assert row is not None
        return {"station_id": station_id, "start": start, "end": end, **row}

    # -- configuration bundles and API idempotency ------------------------------------------
    def save_bundle(self, version: int, kind: str, body: dict[str, Any]) -> None:
        with self.transaction() as c:
            latest = self._one("SELECT max(version) AS v FROM bundles")
            if latest and latest["v"] is not None and version <= latest["v"]:
                raise Conflict(
                    f"bundle version {version} is not newer than the current {latest['v']}"
                )
            c.execute(
                "INSERT INTO bundles(version, kind, body, applied_at) VALUES (?,?,?,?)",
                (version, kind, json.dumps(body), self.clock()),
            )

    def current_bundle(self) -> Row | None:
        row = self._one("SELECT * FROM bundles ORDER BY version DESC LIMIT 1")
        if row:
            row["body"] = json.loads(row["body"])
        return row

    def idempotent_response(self, scope: str, key: str) -> Row | None:
        """The first answer given to ``key`` in ``scope``, unless older than the TTL."""
        return self._one(
            "SELECT fingerprint, response FROM idempotency WHERE scope=? AND key=?"
            " AND created_at >= ?",
            (scope, key, self.clock() - self.idempotency_ttl),
        )

    def remember_response(self, scope: str, key: str, fingerprint: str, response: str) -> None:
        """Keep an answer for its key; every 64th call prunes expired and excess keys."""
        with self.transaction() as c:
            c.execute(
                "INSERT INTO idempotency(scope, key, fingerprint, response, created_at)"
                " VALUES (?,?,?,?,?) ON CONFLICT(scope, key) DO UPDATE SET"
                " fingerprint=excluded.fingerprint, response=excluded.response,"
                " created_at=excluded.created_at WHERE created_at < ?",
                (
                    scope,
                    key,
                    fingerprint,
                    response,
                    self.clock(),
                    self.clock() - self.idempotency_ttl,
                ),
            )
        self._remembered += 1
        if self._remembered % 64 == 0:
            self.prune_idempotency()

    def prune_idempotency(self) -> int:
        """Forget keys older than the TTL, then the oldest beyond ``idempotency_max``."""
        with self.transaction() as c:
            removed = c.execute(
                "DELETE FROM idempotency WHERE created_at < ?",
                (self.clock() - self.idempotency_ttl,),
            ).rowcount
            removed += c.execute(
                "DELETE FROM idempotency WHERE rowid IN (SELECT rowid FROM idempotency"
                " ORDER BY created_at DESC LIMIT -1 OFFSET ?)",
                (self.idempotency_max,),
            ).rowcount
        return int(removed)
