"""Pending rentals on disk: a spot opened for a rider survives a gateway restart.

The flow's own table in the shared database (component ``flow``), written in the same
transaction as the unlock's journal entry and deleted with the trip start or cancellation,
so after a crash the undock of an already opened spot still starts the rider's trip.
"""

from __future__ import annotations

from dockgate.gateway.flow._types import Rental
from dockgate.gateway.store import Database

MIGRATIONS: list[str] = [
    """
    CREATE TABLE flow_rentals (
        key TEXT PRIMARY KEY, command_id INTEGER NOT NULL, rider_id INTEGER NOT NULL,
        record_id INTEGER, vehicle_id INTEGER NOT NULL, serial TEXT NOT NULL,
        station_id INTEGER NOT NULL, spot_id INTEGER NOT NULL, spot INTEGER NOT NULL,
        reader TEXT, created_at REAL NOT NULL, state TEXT NOT NULL
    )
    """,
]
_COLUMNS = (
    "key, command_id, rider_id, record_id, vehicle_id, serial, station_id, spot_id, spot,"
    " reader, created_at, state"
)


class RentalBook:
    """Insert, update and delete pending rentals; joins the caller's open transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        db.migrate("flow", MIGRATIONS)

    def add(self, r: Rental) -> None:
        with self.db.transaction() as c:
            c.execute(
                f"INSERT OR REPLACE INTO flow_rentals({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    r.key,
                    r.command_id,
                    r.rider_id,
                    r.record_id,
                    r.vehicle_id,
                    r.serial,
                    r.station_id,
                    r.spot_id,
                    r.spot,
                    r.reader,
                    r.created_at,
                    r.state,
                ),
            )

    def set_state(self, key: str, state: str) -> None:
        with self.db.transaction() as c:
            c.execute("UPDATE flow_rentals SET state=? WHERE key=?", (state, key))

    def remove(self, key: str) -> None:
        with self.db.transaction() as c:
            c.execute("DELETE FROM flow_rentals WHERE key=?", (key,))

    def load(self) -> list[Rental]:
        with self.db.lock:
            rows = self.db.conn.execute(
                f"SELECT {_COLUMNS} FROM flow_rentals ORDER BY created_at"
            ).fetchall()
        return [Rental(*tuple(row)) for row in rows]
