"""Vehicles: their reported state, the spot each is docked in, their public GBFS ids.

A vehicle's reported state (position, battery, lock) is only ever replaced by a newer report:
the clock of the last one applied (:class:`DeviceClock`) is kept beside it, in a table of
its own (``vehicle_clocks``: the ``Vehicle`` row stays the table's columns, as the API serves
them), read and written with the vehicle (``reporting``, ``report_many``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable

from dockgate.gateway.store._db import BaseDatabase, NotFound
from dockgate.gateway.store._inbox import DeviceClock
from dockgate.gateway.store._keyset import Filters, Keyset, Listing, Page
from dockgate.gateway.store._rows import Vehicle, columns
from dockgate.gateway.store._sql import (
    chunked,
    every,
    fetch_all,
    fetch_one,
    marks,
    must,
    one,
    require,
)

_VEHICLE = f"SELECT {columns(Vehicle)} FROM vehicles"
_VEHICLES = Listing(Vehicle, columns(Vehicle, "v."), "vehicles v", "v.id")
_REPORTING = (
    f"SELECT {columns(Vehicle, 'v.')}, c.report_ts, c.trusted_until FROM vehicles v"
    " LEFT JOIN vehicle_clocks c ON c.vehicle_id = v.id"
)
_NO_CLOCK = DeviceClock(0, 0.0)  # a vehicle whose reports were never applied
#: A report with its clock for ``report_many``: (id, battery, lat, lon, is_locked, clock).
ClockedReport = tuple[int, int, float, float, bool, DeviceClock]


def new_gbfs_id() -> str:
    """A fresh random public vehicle id: GBFS wants ids that change after every trip."""
    return secrets.token_hex(8)


class Vehicles:
    """Vehicle rows, docking and undocking (the spot and the vehicle change together)."""

    def __init__(self, db: BaseDatabase, clock: Callable[[], float]) -> None:
        self.db = db
        self.clock = clock

    # --- writing ---------------------------------------------------------------------------
    def upsert(
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
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO vehicles(id, network_id, serial_number, vehicle_type, battery,"
                " lat, lon, gbfs_id, updated_at) VALUES (?,?,?,?,?,?,?,?,?)"
                " ON CONFLICT(id) DO UPDATE SET network_id=excluded.network_id,"
                " serial_number=excluded.serial_number, vehicle_type=excluded.vehicle_type,"
                " battery=COALESCE(excluded.battery, vehicles.battery),"
                " lat=COALESCE(excluded.lat, vehicles.lat),"
                " lon=COALESCE(excluded.lon, vehicles.lon),"
                " updated_at=excluded.updated_at",
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

    def update(
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
        with self.db.transaction() as c:
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

    def report_many(self, reports: Iterable[ClockedReport]) -> None:
        """Apply newer reports (the caller compared their clocks): state and clock of each,
        in order, with one prepared statement."""
        now = self.clock()
        rows, clocks = [], []
        for id_, battery, lat, lon, locked, clock in reports:
            rows.append((battery, lat, lon, int(locked), now, id_))
            clocks.append((id_, clock.ts, clock.trusted_until))
        if not rows:
            return
        with self.db.transaction() as c:
            cur = c.executemany(
                "UPDATE vehicles SET battery=?, lat=?, lon=?, is_locked=?, updated_at=? WHERE id=?",
                rows,
            )
            if cur.rowcount != len(rows):
                raise NotFound("a vehicle to update was not found")
            c.executemany(
                "INSERT INTO vehicle_clocks(vehicle_id, report_ts, trusted_until) VALUES (?,?,?)"
                " ON CONFLICT(vehicle_id) DO UPDATE SET report_ts = excluded.report_ts,"
                " trusted_until = excluded.trusted_until",
                clocks,
            )

    def enroll(self, network_id: int, serial_number: str) -> int:
        """A vehicle first heard of joins the fleet under the next free id (joins the
        caller's transaction); the id of the vehicle with this serial number."""
        with self.db.transaction() as c:
            c.execute(
                "INSERT INTO vehicles(id, network_id, serial_number, gbfs_id, updated_at)"
                " SELECT COALESCE(MAX(id), 0) + 1, ?, ?, ?, ? FROM vehicles WHERE true"
                " ON CONFLICT(serial_number) DO NOTHING",
                (network_id, serial_number, new_gbfs_id(), self.clock()),
            )
            row = c.execute(
                "SELECT id FROM vehicles WHERE serial_number = ?", (serial_number,)
            ).fetchone()
        return int(row[0])

    def dock(self, vehicle_id: int, spot_id: int) -> None:
        """A vehicle sits in a spot (from a station's report)."""
        with self.db.transaction() as c:
            require(self.db, "vehicles", vehicle_id, "vehicle")
            require(self.db, "spots", spot_id, "spot")
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
        with self.db.transaction() as c:
            spot = must(
                fetch_one(self.db, "SELECT vehicle_id FROM spots WHERE id=?", (spot_id,)),
                f"spot {spot_id}",
            )
            vehicle_id = spot["vehicle_id"]
            if vehicle_id is None:
                return None
            if serial_number is not None:
                v = fetch_one(
                    self.db, "SELECT serial_number FROM vehicles WHERE id=?", (vehicle_id,)
                )
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

    # --- reading ---------------------------------------------------------------------------
    def all(self, network_ids: Iterable[int] | None = None) -> list[Vehicle]:
        """Every vehicle (of these networks), by id."""
        ids = list(network_ids or [])
        sql = _VEHICLE
        if ids:
            sql += f" WHERE network_id IN ({marks(len(ids))})"
        return every(self.db, Vehicle, sql + " ORDER BY id", ids)

    def page(self, network_ids: Iterable[int], keyset: Keyset) -> Page[Vehicle]:
        """A page of the vehicles of these networks (empty: all), by id."""
        filters = Filters()
        filters.one_of("v.network_id", list(network_ids))
        return _VEHICLES.page(self.db, filters, keyset)

    def get(self, id: int) -> Vehicle:
        return must(one(self.db, Vehicle, f"{_VEHICLE} WHERE id=?", (id,)), f"vehicle {id}")

    def by_serial(self, serial_number: str) -> Vehicle | None:
        """The vehicle with this serial number (the device id on MQTT), or None; indexed."""
        return one(self.db, Vehicle, f"{_VEHICLE} WHERE serial_number = ?", (serial_number,))

    def reporting(self, serial_numbers: Iterable[str]) -> dict[str, tuple[Vehicle, DeviceClock]]:
        """``by_serials`` with the clock of each vehicle's last applied report."""
        found: dict[str, tuple[Vehicle, DeviceClock]] = {}
        for part in chunked(serial_numbers):
            sql = f"{_REPORTING} WHERE v.serial_number IN ({marks(len(part))})"
            for row in fetch_all(self.db, sql, part):
                vehicle = Vehicle(*row[:-2])
                ts, trusted_until = row[-2], row[-1]
                clock = _NO_CLOCK if ts is None else DeviceClock(ts, trusted_until)
                found[vehicle.serial_number] = (vehicle, clock)
        return found

    def by_serials(self, serial_numbers: Iterable[str]) -> dict[str, Vehicle]:
        """The vehicles with these serial numbers, by serial (unknown ones left out)."""
        found: dict[str, Vehicle] = {}
        for part in chunked(serial_numbers):
            sql = f"{_VEHICLE} WHERE serial_number IN ({marks(len(part))})"
            for vehicle in every(self.db, Vehicle, sql, part):
                found[vehicle.serial_number] = vehicle
        return found
