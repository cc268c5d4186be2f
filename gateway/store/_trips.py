"""Trips: opened when a vehicle leaves with a rider, held and resumed, closed with their cost.

A trip's ``status`` is the dashboard's trip state: ``running``, ``on-hold`` (locked during
the trip: the rider's hold, or the rules' auto-pause), ``finished`` (docked, or ended by a
rule, and charged) or ``cancelled`` (closed without a ride).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from dockgate.gateway.store._db import BaseDatabase, Conflict, NotFound, StoreError
from dockgate.gateway.store._keyset import (
    LAST,
    Filters,
    Keyset,
    Listing,
    Page,
    Sort,
    ilike,
    like,
)
from dockgate.gateway.store._rows import Trip, columns
from dockgate.gateway.store._sql import chunked, every, last_id, marks, must, one, require
from dockgate.gateway.store._vehicles import Vehicles, new_gbfs_id


class TripState(StrEnum):
    """The dashboard's trip states (its ``state`` filter of trips)."""

    RUNNING = "running"
    ON_HOLD = "on-hold"
    FINISHED = "finished"
    CANCELLED = "cancelled"


TRIP_STATES = tuple(s.value for s in TripState)
OPEN_TRIP_STATES = (TripState.RUNNING.value, TripState.ON_HOLD.value)
TRIP_STATUSES = OPEN_TRIP_STATES  # what ``set_status`` moves an open trip between
_OPEN = f"status IN ('{TripState.RUNNING}', '{TripState.ON_HOLD}')"
_TRIP = f"SELECT {columns(Trip)} FROM trips"
_TRIPS = Listing(
    Trip, columns(Trip, "t."), "trips t JOIN vehicles v ON v.id = t.vehicle_id", "t.id"
)
#: ``TripQuery.sort_by``: the SQL each sort key orders by; ``?`` is now (a running trip's
#: duration so far); a running trip has no end date and sorts after every ended one.
_SORTS = {
    "start_date": "t.started_at",
    "end_date": f"COALESCE(t.ended_at, {LAST})",
    "duration": "COALESCE(t.ended_at, ?) - t.started_at",
}
TRIP_SORTS = tuple(_SORTS)
_DURATION = _SORTS["duration"]
_CLUSTER_OF = "(SELECT s.cluster_id FROM stations s WHERE s.id = t.{}_station_id)"
_CLUSTER_NAMED = (
    "EXISTS (SELECT 1 FROM stations s JOIN clusters c ON c.id = s.cluster_id"
    " WHERE s.id = t.{}_station_id AND " + ilike("c.name") + ")"
)


@dataclass(frozen=True, slots=True)
class TripQuery:
    """Trips with the dashboard's filters, a page at a time.

    Dates are Unix times, durations seconds, every bound inclusive; an empty
    ``network_ids`` (the vehicle's network) or ``states`` means all. ``email`` and the
    cluster names match a part (any case); the start and end clusters are those of the
    stations the trip started and ended at. A running trip's duration runs to now.
    ``sort_by`` None orders by id alone.
    """

    network_ids: Sequence[int] = ()
    states: Sequence[str] = ()
    start_date_min: float | None = None
    start_date_max: float | None = None
    end_date_min: float | None = None
    end_date_max: float | None = None
    trip_id_min: int | None = None
    trip_id_max: int | None = None
    serial_number: str | None = None
    email: str | None = None
    user_id: int | None = None
    cluster_start_id: int | None = None
    cluster_start_name: str | None = None
    cluster_end_id: int | None = None
    cluster_end_name: str | None = None
    duration_min: float | None = None
    duration_max: float | None = None
    sort_by: str | None = None
    keyset: Keyset = field(default_factory=Keyset)

    def filters(self, now: float) -> Filters:
        """The WHERE clauses of this query (every page's, before the keyset's)."""
        unknown = set(self.states) - set(TRIP_STATES)
        if unknown:
            raise StoreError(f"unknown trip state {sorted(unknown)[0]!r}")
        f = Filters()
        f.one_of("v.network_id", list(self.network_ids))
        f.one_of("t.status", list(self.states))
        f.between("t.started_at", self.start_date_min, self.start_date_max)
        f.between("t.ended_at", self.end_date_min, self.end_date_max)
        f.between("t.id", self.trip_id_min, self.trip_id_max)
        f.compare("v.serial_number", "=", self.serial_number)
        f.compare("t.rider_id", "=", self.user_id)
        if self.email is not None:
            rider = (
                f"EXISTS (SELECT 1 FROM riders r WHERE r.id = t.rider_id AND {ilike('r.email')})"
            )
            f.add(rider, like(self.email))
        f.compare(_CLUSTER_OF.format("start"), "=", self.cluster_start_id)
        f.compare(_CLUSTER_OF.format("end"), "=", self.cluster_end_id)
        if self.cluster_start_name is not None:
            f.add(_CLUSTER_NAMED.format("start"), like(self.cluster_start_name))
        if self.cluster_end_name is not None:
            f.add(_CLUSTER_NAMED.format("end"), like(self.cluster_end_name))
        if self.duration_min is not None:
            f.add(f"{_DURATION} >= ?", now, self.duration_min)
        if self.duration_max is not None:
            f.add(f"{_DURATION} <= ?", now, self.duration_max)
        return f

    def sort(self, now: float) -> Sort | None:
        if self.sort_by is None:
            return None
        if self.sort_by not in _SORTS:
            raise StoreError(f"cannot sort trips by {self.sort_by!r}")
        expression = _SORTS[self.sort_by]
        return Sort(expression, (now,) if "?" in expression else ())


class Trips:
    """Trip rows; a start or an end also moves its vehicle (and charges the rider)."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float], vehicles: Vehicles) -> None:
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
                " start_spot_id, status, started_at, updated_at) VALUES (?,?,?,?,?,?,?,?)"
                " RETURNING id",
                (rider_id, vehicle_id, record_id, station_id, spot_id, TripState.RUNNING, now, now),
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
        """Finish a trip (docked at any station), charge its cost and free the vehicle."""
        with self.db.transaction() as c:
            trip = self.get(trip_id)
            if trip.status not in OPEN_TRIP_STATES:
                raise Conflict(f"trip {trip_id} has already ended")
            now = self.clock()
            c.execute(
                "UPDATE trips SET status=?, ended_at=?, end_station_id=?, end_spot_id=?,"
                " cost=?, updated_at=? WHERE id=?",
                (TripState.FINISHED, now, station_id, spot_id, cost, now, trip_id),
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
        """Hold (``on-hold``) or resume (``running``) an open trip.

        A hold's start is kept in ``paused_at`` (a second hold while held keeps the first
        start); resuming adds the hold to ``held_seconds``, so every on-hold minute is priced.
        """
        if status not in TRIP_STATUSES:
            raise StoreError(f"an open trip is {' or '.join(TRIP_STATUSES)}, not {status!r}")
        with self.db.transaction() as c:
            now = self.clock()
            held = status == TripState.ON_HOLD
            cur = c.execute(
                "UPDATE trips SET"
                " held_seconds = held_seconds + CASE WHEN ? = 0 AND paused_at IS NOT NULL"
                "  AND ? > paused_at THEN ? - paused_at ELSE 0 END,"
                " paused_at = CASE WHEN ? = 0 THEN NULL ELSE COALESCE(paused_at, ?) END,"
                f" status=?, updated_at=? WHERE id=? AND {_OPEN}",
                (int(held), now, now, int(held), now, status, now, trip_id),
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
        """Trips running or on hold (of this rider), by id."""
        if rider_id is None:
            return every(self.db, Trip, f"{_TRIP} WHERE {_OPEN} ORDER BY id")
        sql = f"{_TRIP} WHERE {_OPEN} AND rider_id=? ORDER BY id"
        return every(self.db, Trip, sql, (rider_id,))

    def page(self, *, after_id: int = 0, limit: int = 100) -> list[Trip]:
        """Trips with an id above ``after_id``, by id, at most ``limit``."""
        return every(self.db, Trip, f"{_TRIP} WHERE id > ? ORDER BY id LIMIT ?", (after_id, limit))

    def search(self, query: TripQuery) -> Page[Trip]:
        """``query``'s page and how many trips its filters match in all."""
        now = self.clock()
        return _TRIPS.page(self.db, query.filters(now), query.keyset, query.sort(now))
