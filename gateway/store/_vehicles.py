"""Vehicles: their reported state, the spot each is docked in, their public GBFS ids."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable

from dockgate.gateway.store._db import Database, NotFound
from dockgate.gateway.store._rows import Vehicle, columns
from dockgate.gateway.store._sql import chunked, every, fetch_one, marks, must, one, require

_VEHICLE = f"SELECT {columns(Vehicle)} FROM vehicles"
#: A vehicle report for ``update_many``: (id, battery, lat, lon, is_locked).
Report = tuple[int, int | None, float | None, float | None, bool | None]


def new_gbfs_id() -> str:
    """A fresh random public vehicle id: GBFS wants ids that change after every trip."""
    return secrets.token_hex(8)


class Vehicles:
    """Vehicle rows, docking and undocking (the spot and the vehicle change together)."""

    def __init__(self, db: Database, clock: Callable[[], float]) -> None:
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

    def update_many(self, reports: Iterable[Report]) -> None:
        """``update`` for many: ``(id, battery, lat, lon, is_locked)`` each, in order, with
        one prepared statement (``executemany``); ``None`` keeps a field's value."""
        now = self.clock()
        rows = [
            (battery, lat, lon, None if locked is None else int(locked), now, id_)
            for id_, battery, lat, lon, locked in reports
        ]
        if not rows:
            return
        with self.db.transaction() as c:
            cur = c.executemany(
                "UPDATE vehicles SET battery=COALESCE(?, battery), lat=COALESCE(?, lat),"
                " lon=COALESCE(?, lon), is_locked=COALESCE(?, is_locked), updated_at=?"
                " WHERE id=?",
                rows,
            )
            if cur.rowcount != len(rows):
                raise NotFound("a vehicle to update was not found")

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

    def get(self, id: int) -> Vehicle:
        return must(one(self.db, Vehicle, f"{_VEHICLE} WHERE id=?", (id,)), f"vehicle {id}")

    def by_serial(self, serial_number: str) -> Vehicle | None:
        """The vehicle with this serial number (the device id on MQTT), or None; indexed."""
        return one(self.db, Vehicle, f"{_VEHICLE} WHERE serial_number = ?", (serial_number,))

    def by_serials(self, serial_numbers: Iterable[str]) -> dict[str, Vehicle]:
        """The vehicles with these serial numbers, by serial (unknown ones left out)."""
        found: dict[str, Vehicle] = {}
        for part in chunked(serial_numbers):
            sql = f"{_VEHICLE} WHERE serial_number IN ({marks(len(part))})"
            for vehicle in every(self.db, Vehicle, sql, part):
                found[vehicle.serial_number] = vehicle
        return found
