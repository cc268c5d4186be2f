"""Trips: opened when a vehicle leaves with a rider, held and resumed, closed with their cost."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from dockgate.gateway.store._db import Conflict, Database, NotFound, StoreError
from dockgate.gateway.store._rows import Trip, columns
from dockgate.gateway.store._sql import chunked, every, last_id, marks, must, one, require
from dockgate.gateway.store._vehicles import Vehicles, new_gbfs_id

_TRIP = f"SELECT {columns(Trip)} FROM trips"
TRIP_STATUSES = ("started", "paused", "on_hold")  # an open trip's; "ended" closes it


class Trips:
    """Trip rows; a start or an end also moves its vehicle (and charges the rider)."""

    def __init__(self, db: Database, clock: Callable[[], float], vehicles: Vehicles) -> None:
        self.db = db
        self.clock = clock
        self.vehicles = vehicles

    def start(
        self,
        rider_id: int,
        vehicle_id: int,
        *,
        record_id: int | None = None,
        station_id: int | None = None,
        spot_id: int | None = None,
    ) -> int:
        """Open a trip: the vehicle leaves its spot, gets a fresh GBFS id and is in use."""
        with self.db.transaction() as c:
            vehicle = self.vehicles.get(vehicle_id)
            require(self.db, "riders", rider_id, "rider")
            if vehicle.trip_id is not None:
                raise Conflict(f"vehicle {vehicle_id} is already on trip {vehicle.trip_id}")
            now = self.clock()
            spot_id = spot_id if spot_id is not None else vehicle.spot_id
            cur = c.execute(
                "INSERT INTO trips(rider_id, vehicle_id, record_id, start_station_id,"
                " start_spot_id, started_at, updated_at) VALUES (?,?,?,?,?,?,?)",
                (rider_id, vehicle_id, record_id, station_id, spot_id, now, now),
            )
            trip_id = last_id(cur)
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

    def end(
        self,
        trip_id: int,
        *,
        cost: int = 0,
        station_id: int | None = None,
        spot_id: int | None = None,
    ) -> Trip:
        """Close a trip (docked at any station), charge its cost and free the vehicle."""
        with self.db.transaction() as c:
            trip = self.get(trip_id)
            if trip.status == "ended":
                raise Conflict(f"trip {trip_id} has already ended")
            now = self.clock()
            c.execute(
                "UPDATE trips SET status='ended', ended_at=?, end_station_id=?, end_spot_id=?,"
                " cost=?, updated_at=? WHERE id=?",
                (now, station_id, spot_id, cost, now, trip_id),
            )
            c.execute(
                "UPDATE riders SET credit=credit-?, updated_at=? WHERE id=?",
                (cost, now, trip.rider_id),
            )
            c.execute(
                "UPDATE vehicles SET trip_id=NULL, status='available', is_locked=1,"
                " gbfs_id=?, updated_at=? WHERE id=?",
                (new_gbfs_id(), now, trip.vehicle_id),
            )
            if spot_id is not None:
                self.vehicles.dock(trip.vehicle_id, spot_id)
            return self.get(trip_id)

    def set_status(self, trip_id: int, status: str) -> None:
        """Pause or hold (``paused`` / ``on_hold``) or resume (``started``) a trip.

        A hold's start is kept in ``paused_at`` (a second hold while held keeps the first
        start); resuming adds the hold to ``held_seconds``, so every on-hold minute is priced.
        """
        if status not in TRIP_STATUSES:
            raise StoreError(f"unknown trip status {status!r}")
        with self.db.transaction() as c:
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

    def get(self, id: int) -> Trip:
        return must(one(self.db, Trip, f"{_TRIP} WHERE id=?", (id,)), f"trip {id}")

    def by_ids(self, ids: Iterable[int]) -> dict[int, Trip]:
        """The trips with these ids, by id (unknown ones left out): one query per 500."""
        found: dict[int, Trip] = {}
        for part in chunked(ids):
            for trip in every(self.db, Trip, f"{_TRIP} WHERE id IN ({marks(len(part))})", part):
                found[trip.id] = trip
        return found

    def open(self, rider_id: int | None = None) -> list[Trip]:
        """Trips not ended (of this rider), by id."""
        if rider_id is None:
            return every(self.db, Trip, f"{_TRIP} WHERE status != 'ended' ORDER BY id")
        sql = f"{_TRIP} WHERE status != 'ended' AND rider_id=? ORDER BY id"
        return every(self.db, Trip, sql, (rider_id,))

    def page(self, *, after_id: int = 0, limit: int = 100) -> list[Trip]:
        """Trips with an id above ``after_id``, by id, at most ``limit``."""
        return every(self.db, Trip, f"{_TRIP} WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))
